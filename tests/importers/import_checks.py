"""Shared by the importer tests: run `vla-edge pack import` and check a refusal (exit 2, the
message names what is wrong, and neither the pack nor a staging directory is left behind)."""

from __future__ import annotations

from pathlib import Path

from cli_runner import run_cli


def run_import(fmt: str, src: Path, out: Path, *extra: str):
    return run_cli("pack", "import", "--from", fmt, str(src), "--out", str(out), *extra)


def assert_refused(r, out: Path, *words: str) -> None:
    assert r.returncode == 2, r.stdout + r.stderr
    for w in words:
        assert w in r.stderr, r.stderr
    assert not out.exists()
    assert not [p for p in out.parent.iterdir() if p.name.startswith(f".{out.name}.partial")]
