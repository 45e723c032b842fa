"""x86 target: the native C++ core on ggml's CPU backend (vla_edge._native)."""
