"""The filter's exception, in its own module so the native loader can raise it without a cycle."""

from ...errors import VlaEdgeError


class SafetyError(VlaEdgeError):
    """The filter refused an operation (resume after e-stop, driver failure while commanding, or its
    native core is missing)."""
