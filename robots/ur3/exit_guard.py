"""Stop the arm on every way out of the process: SIGINT (Ctrl-C), interpreter exit, exceptions.

Why a handler and not only `try/finally`: Ctrl-C raises KeyboardInterrupt wherever the main
thread happens to be (possibly outside the run loop's `with` block, or in a thread that is not
the one streaming), and atexit covers a program that simply falls off the end. Both call the
same idempotent stop, and the previous SIGINT handler is restored when the guard is released.

At interpreter exit the guard may also run a full teardown (`at_exit`): objects that own native
threads (ur_rtde's receive interface) must be closed while the interpreter still runs. Left to
finalisation, their threads meet half-destroyed runtime state and the process can abort
("terminate called without an active exception", exit code -6) after the arm was stopped.
"""

from __future__ import annotations

import atexit
import signal
import threading
from typing import Callable


class ExitGuard:
    """While armed: SIGINT first runs `stop`, then behaves as before; atexit runs `at_exit`
    (default: `stop`), which must stop the arm first and may then release everything."""

    def __init__(self, stop: Callable[[], None], at_exit: Callable[[], None] | None = None):
        self._stop = stop
        self._at_exit = at_exit or stop
        self._previous: object = None
        self._sigint_installed = False
        self._armed = False
        self._exiting = False

    def arm(self) -> None:
        if self._armed:
            return
        atexit.register(self._on_exit)
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.getsignal(signal.SIGINT)
            signal.signal(signal.SIGINT, self._on_sigint)
            self._sigint_installed = True
        self._armed = True

    def release(self) -> None:
        if not self._armed:
            return
        if not self._exiting:  # inside the atexit run the callback is already being consumed
            atexit.unregister(self._on_exit)
        if self._sigint_installed and threading.current_thread() is threading.main_thread():
            # Only restore if nobody replaced our handler in the meantime.
            if signal.getsignal(signal.SIGINT) == self._on_sigint:
                signal.signal(signal.SIGINT, self._previous)  # type: ignore[arg-type]
            self._sigint_installed = False
        self._armed = False

    @property
    def handles_sigint(self) -> bool:
        return self._sigint_installed

    def _stop_quietly(self) -> None:
        try:
            self._stop()
        except Exception:  # noqa: BLE001 - at exit there is nobody left to report to
            pass

    def _on_exit(self) -> None:
        self._exiting = True
        try:
            self._at_exit()
        except Exception:  # noqa: BLE001 - at exit there is nobody left to report to
            self._stop_quietly()  # a failed teardown must still leave the arm stopped

    def _on_sigint(self, signum: int, frame: object) -> None:
        self._stop_quietly()
        previous = self._previous
        if callable(previous):
            previous(signum, frame)
        elif previous == signal.SIG_IGN:
            return
        else:
            raise KeyboardInterrupt
