// Runs vla_edge::run_or_hand_over (native/src/loop_fallback.h) once with a stand-in loop, the way the
// runtime runs a CUDA loop, and prints what it left behind on one line for
// tests/native/test_loop_fallback.py. argv[1]: "ok" (the loop runs) or "throw" (it throws as a
// refused launch would).
#include <cstdio>
#include <memory>
#include <stdexcept>
#include <string>

#include "loop_fallback.h"

namespace {
struct StandInLoop {};
int cleared = 0;
void clear_error() { ++cleared; }
}  // namespace

int main(int argc, char** argv) {
    const std::string mode = argc > 1 ? argv[1] : "ok";
    auto loop = std::make_unique<StandInLoop>();
    bool wanted = true;
    std::string note = "cuda";
    int ran = 0;
    const bool done = vla_edge::run_or_hand_over(
        loop, wanted, note, "CUDA expert loop",
        [&] {
            ++ran;
            if (mode == "throw") throw std::runtime_error("too many resources requested for launch");
        },
        clear_error);
    std::printf("done=%d ran=%d loop=%d wanted=%d cleared=%d note=%s\n", done, ran, loop != nullptr, wanted, cleared,
                note.c_str());
    return 0;
}
