// How the runtime hands a stage from one of our CUDA loops to ggml's graph when the loop fails while
// it runs (pi05_runtime.cpp). In a header of its own, free of CUDA, so that a CPU machine can test
// the bookkeeping (tests/native/test_loop_fallback.py builds tests/native/loop_fallback_check.cpp).
#pragma once

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <memory>
#include <stdexcept>
#include <string>

namespace vla_edge {

// Runs one of our loops (`run`). Where it throws (a launch or a graph capture the device refuses: the
// prefix loop's first launch on the full pack did, 2026-12-07), the loop is dropped for the rest of
// the session (`loop` emptied, `wanted` false), its note says why (describe()), stderr says so once,
// and false tells the caller to run ggml's graph of the same stage for this call and every later one:
// slower, never silent. `clear_error` (may be null) runs first: it clears the device's pending error,
// on which ggml-CUDA would abort the process. Where the device itself is broken ggml's graph fails
// too, and the call fails with that error (no actions, no motion).
// VLA_EDGE_CUDA_FAIL_LOOP=<word>: a loop whose name (`who`) holds that word fails as a refused launch
// would (the tests of this fallback; no loop fails on purpose otherwise).
template <typename Loop, typename Run>
bool run_or_hand_over(std::unique_ptr<Loop>& loop, bool& wanted, std::string& note, const char* who, Run run,
                      void (*clear_error)() = nullptr) {
    try {
        const char* fail = std::getenv("VLA_EDGE_CUDA_FAIL_LOOP");
        if (fail && *fail && std::strstr(who, fail)) throw std::runtime_error("failure injected by VLA_EDGE_CUDA_FAIL_LOOP");
        run();
        return true;
    } catch (const std::exception& e) {
        if (clear_error) clear_error();
        loop.reset();
        wanted = false;
        note = std::string("ggml graph (") + who + " failed, ggml's graph from then on: " + e.what() + ")";
        std::fprintf(stderr, "vla-edge: %s\n", note.c_str());
        return false;
    }
}

}  // namespace vla_edge
