"""`vla-edge report` as a user runs it: files written, exit codes, and every bad input refused
with the file (and line) named and nothing half-written."""

from __future__ import annotations

import json

from cli_runner import run_cli
from run_dir_writer import SyntheticRun

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def test_report_writes_markdown_json_and_plots(tmp_path):
    run_dir = SyntheticRun(seed=1).write(tmp_path / "run")
    result = run_cli("report", str(run_dir), "--min-coverage", "0.9")
    assert result.returncode == 0, result.stderr
    out = run_dir / "report"
    report = json.loads((out / "report.json").read_text())
    assert report["verdict"] == "all 1 run(s) passed every evaluated check"
    md = (out / "report.md").read_text()
    assert "# Shadow-trial report" in md and "| coverage | 0.929 | >= 0.9 | pass |" in md
    for plot in report["runs"][0]["plots"]:
        data = (out / plot).read_bytes()
        assert data.startswith(PNG_MAGIC) and len(data) > 10_000
        assert f"]({plot})" in md
    assert not [p for p in tmp_path.rglob(".*staging*")]  # no staging folder left behind


def test_strict_exits_1_when_a_check_fails_and_still_writes_the_report(tmp_path):
    run_dir = SyntheticRun(seed=1).write(tmp_path / "run")
    result = run_cli("report", str(run_dir), "--strict", "--no-plots", "--min-coverage", "0.9",
                     "--max-tracking-error", "0.01")
    assert result.returncode == 1
    assert "FAIL" in result.stdout and "tracking_p95_rad" in result.stdout
    assert json.loads((run_dir / "report" / "report.json").read_text())["verdict"].startswith("NOT READY")
    assert not list((run_dir / "report").glob("*/*.png"))  # --no-plots
    ok = run_cli("report", str(run_dir), "--strict", "--no-plots", "--force", "--min-coverage", "0.9")
    assert ok.returncode == 0, ok.stdout + ok.stderr


def test_several_runs_make_one_trial_report_and_need_out(tmp_path):
    a = SyntheticRun(seed=1).write(tmp_path / "a" / "run")
    b = SyntheticRun(seed=2, planted_jump=100).write(tmp_path / "b" / "run")  # same folder name
    refused = run_cli("report", str(a), str(b))
    assert refused.returncode == 2 and "--out" in refused.stderr
    result = run_cli("report", str(a), str(b), "--out", str(tmp_path / "trial"), "--no-plots", "--min-coverage", "0.9")
    assert result.returncode == 0, result.stderr
    report = json.loads((tmp_path / "trial" / "report.json").read_text())
    assert [r["name"] for r in report["runs"]] == ["00-run", "01-run"]
    assert report["verdict"] == "NOT READY: 1 of 2 run(s) failed a check"
    assert report["runs"][1]["verdict"].startswith("NOT READY") and "filter_velocity" in report["runs"][1]["verdict"]


def test_an_existing_report_is_kept_unless_force(tmp_path):
    run_dir = SyntheticRun(seed=1).write(tmp_path / "run")
    out = tmp_path / "out"
    out.mkdir()
    (out / "mine.txt").write_text("keep me")
    refused = run_cli("report", str(run_dir), "--out", str(out), "--no-plots")
    assert refused.returncode == 2 and "--force" in refused.stderr
    assert (out / "mine.txt").read_text() == "keep me"
    assert run_cli("report", str(run_dir), "--out", str(out), "--no-plots", "--force").returncode == 0
    assert not (out / "mine.txt").exists() and (out / "report.md").is_file()


def test_bad_run_directories_are_refused_by_name(tmp_path):
    good = SyntheticRun(seed=1).write(tmp_path / "good")

    missing = SyntheticRun(seed=1).write(tmp_path / "no_config")
    (missing / "config.yaml").unlink()
    result = run_cli("report", str(good), str(missing), "--out", str(tmp_path / "out1"))
    assert result.returncode == 2 and "no_config/config.yaml" in result.stderr and "missing" in result.stderr
    assert not (tmp_path / "out1").exists()  # nothing written for the good run either

    corrupt = SyntheticRun(seed=1).write(tmp_path / "corrupt")
    lines = (corrupt / "ticks.jsonl").read_text().splitlines(keepends=True)
    lines[10] = lines[10][:25] + "\n"
    (corrupt / "ticks.jsonl").write_text("".join(lines))
    result = run_cli("report", str(corrupt))
    assert result.returncode == 2 and "ticks.jsonl:11" in result.stderr
    assert not (corrupt / "report").exists()

    wrong = SyntheticRun(seed=1).write(tmp_path / "wrong_joints")
    records = [json.loads(line) for line in (wrong / "ticks.jsonl").read_text().splitlines()]
    records[42]["actual"] = [0.1, 0.2, 0.3]
    (wrong / "ticks.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    result = run_cli("report", str(wrong))
    assert result.returncode == 2 and "tick 42 field 'actual'" in result.stderr and "expected 2 numbers" in result.stderr

    not_a_run = tmp_path / "empty"
    not_a_run.mkdir()
    assert run_cli("report", str(not_a_run)).returncode == 2


def test_a_run_cut_off_mid_line_is_reported_with_a_note(tmp_path):
    run_dir = SyntheticRun(seed=1).write(tmp_path / "run")
    text = (run_dir / "ticks.jsonl").read_text()
    (run_dir / "ticks.jsonl").write_text(text + '{"i": 600, "t": 6.0, "comm')  # the crash
    result = run_cli("report", str(run_dir), "--no-plots")
    assert result.returncode == 0, result.stderr
    report = json.loads((run_dir / "report" / "report.json").read_text())
    entry = report["runs"][0]
    assert entry["timing"]["ticks"] == 600
    assert any("cut off" in n for n in entry["notes"]) and any("summary.json absent" in n for n in entry["notes"])


def test_a_run_without_event_log_or_summary_leaves_stops_and_watchdogs_unknown(tmp_path):
    run_dir = SyntheticRun(seed=1).write(tmp_path / "run")
    (run_dir / "events.jsonl").unlink()  # the writer writes no summary.json: a crashed run
    assert run_cli("report", str(run_dir), "--no-plots", "--min-coverage", "0.9").returncode == 0
    entry = json.loads((run_dir / "report" / "report.json").read_text())["runs"][0]
    checks = {c["name"]: c["passed"] for c in entry["checks"]}
    assert checks["safety_stops"] is None and checks["watchdogs"] is None  # never "passed" on no data
    assert any("safety stops and watchdog trips are unknown" in n for n in entry["notes"])
