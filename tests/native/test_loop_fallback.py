"""The bookkeeping of the runtime's hand-over from a failing CUDA loop to ggml's graph
(native/src/loop_fallback.h, `run_or_hand_over`), on the CPU with a stand-in loop: a loop that runs
is kept; one that throws is dropped for the rest of the session with the device's error cleared, its
note names the stage and the reason and stderr says so once; VLA_EDGE_CUDA_FAIL_LOOP fails only the loop
it names. The same calls on the GPU, with the real loops: tests/gpu/test_cuda_loop_fallback.py."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def check_program(tmp_path_factory: pytest.TempPathFactory) -> Path:
    compiler = shutil.which("c++") or shutil.which("g++")
    if compiler is None:
        pytest.skip("no C++ compiler on this machine")
    exe = tmp_path_factory.mktemp("loop_fallback") / "check"
    subprocess.run([compiler, "-std=c++17", "-Wall", "-Werror", f"-I{REPO / 'native' / 'src'}",
                    str(REPO / "tests" / "native" / "loop_fallback_check.cpp"), "-o", str(exe)], check=True)
    return exe


def run(exe: Path, mode: str, fail: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "VLA_EDGE_CUDA_FAIL_LOOP"}
    if fail is not None:
        env["VLA_EDGE_CUDA_FAIL_LOOP"] = fail
    return subprocess.run([str(exe), mode], capture_output=True, text=True, env=env, check=True)


def test_a_loop_that_runs_is_kept_and_nothing_is_said(check_program: Path) -> None:
    done = run(check_program, "ok")
    assert done.stdout.strip() == "done=1 ran=1 loop=1 wanted=1 cleared=0 note=cuda"
    assert done.stderr == ""


def test_a_loop_that_throws_is_dropped_with_its_reason_said_once(check_program: Path) -> None:
    done = run(check_program, "throw")
    note = "ggml graph (CUDA expert loop failed, ggml's graph from then on: too many resources requested for launch)"
    assert done.stdout.strip() == f"done=0 ran=1 loop=0 wanted=0 cleared=1 note={note}"
    assert done.stderr == f"vla-edge: {note}\n"


def test_the_injected_failure_hits_only_the_loop_it_names(check_program: Path) -> None:
    hit = run(check_program, "ok", fail="expert")
    assert hit.stdout.strip().startswith("done=0 ran=0 loop=0 wanted=0 cleared=1 note=ggml graph (CUDA expert loop failed")
    assert "failure injected by VLA_EDGE_CUDA_FAIL_LOOP" in hit.stdout
    assert run(check_program, "ok", fail="vision").stdout.strip() == "done=1 ran=1 loop=1 wanted=1 cleared=0 note=cuda"
    assert run(check_program, "ok", fail="").stdout.strip() == "done=1 ran=1 loop=1 wanted=1 cleared=0 note=cuda"
