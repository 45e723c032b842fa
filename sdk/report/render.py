"""The Markdown form of a trial report: one summary table for the trial, then one section per run
with its readiness checks first (what an engineer reads before the details)."""

from __future__ import annotations

from typing import Any


def fmt(value: Any, digits: int = 3) -> str:
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.{digits}g}"
    return str(value)


def _result(passed: bool | None) -> str:
    return {True: "pass", False: "**FAIL**", None: "not evaluated"}[passed]


def _table(header: list[str], rows: list[list[Any]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    lines += ["| " + " | ".join(fmt(c) for c in row) + " |" for row in rows]
    return lines + [""]


def _check_value(name: str, checks: list[dict[str, Any]]) -> Any:
    return next(c["value"] for c in checks if c["name"] == name)


def _trial_table(runs: list[dict[str, Any]]) -> list[str]:
    rows = [[r["name"], r["mode"], r["timing"]["duration_s"], _check_value("coverage", r["checks"]),
             _check_value("interventions", r["checks"]), _check_value("safety_stops", r["checks"]),
             _check_value("chunk_age", r["checks"]), r["verdict"]] for r in runs]
    return _table(["run", "mode", "duration s", "coverage", "intervention share", "safety stops",
                   "chunk age p95 / chunk", "verdict"], rows)


def _per_joint(run: dict[str, Any]) -> list[str]:
    safety, tracking = run["safety"], run["tracking"]["policy_vs_actual"]
    rows = []
    for joint in run["joints"]:
        err = (tracking or {}).get("per_joint", {}).get(joint, {})
        rows.append([joint, safety["max_abs_filter_delta"][joint], safety["peak_velocity_share_of_limit"][joint],
                     safety["peak_acceleration_share_of_limit"][joint], err.get("mean"), err.get("p95"), err.get("max")])
    return _table(["joint", "max abs filter change", "peak velocity / limit", "peak accel / limit",
                   "abs(policy - actual) mean", "p95", "max"], rows)


def _run_section(run: dict[str, Any]) -> list[str]:
    t, cov, safety = run["timing"], run["coverage"], run["safety"]
    chunks = t["chunks"]
    lines = [f"## {run['name']}", "",
             f"{run['mode']} run of robot `{run['robot']}`, pack `{run['pack']}` ({run['quant_recipe']}) on target "
             f"`{run['target']}`; prompt: {run['prompt']!r}; ended: {run['end_reason'] or 'not recorded'}; "
             f"{t['duration_s']:.1f} s, {t['ticks']} ticks at {1e3 / t['control_period_ms']:.0f} Hz.", "",
             f"**{run['verdict']}**", "", f"What the arm did: {run.get('outcome', 'not recorded')}.", "",
             "### Readiness checks", ""]
    lines += _table(["check", "value", "threshold", "result", "what it measures"],
                    [[c["name"], c["value"], c["threshold"], _result(c["passed"]), c["why"]] for c in run["checks"]])
    lat, age = chunks.get("latency_ms") or {}, chunks.get("age_at_arrival_ms") or {}
    lines += ["### Timing", ""]
    lines += _table(["quantity", "value"], [
        ["chunks received / rejected", f"{fmt(chunks.get('received'))} / {fmt(chunks.get('rejected'))}"],
        ["inference latency ms p50 / p95 / max", f"{fmt(lat.get('p50'))} / {fmt(lat.get('p95'))} / {fmt(lat.get('max'))}"],
        ["chunk age at arrival ms p50 / p95 / max", f"{fmt(age.get('p50'))} / {fmt(age.get('p95'))} / {fmt(age.get('max'))}"],
        ["age - latency ms p50 (capture, hand-over)", (chunks.get("age_minus_latency_ms") or {}).get("p50")],
        ["time one chunk covers ms", t["chunk_duration_ms"]],
        ["share of chunk rows already past on arrival", chunks.get("rows_past_on_arrival")],
        ["first target after s", cov["first_target_s"]],
        ["longest gap without a target s", cov["longest_gap_s"]],
        ["control tick work ms p50 / p99", f"{fmt(t['tick_work_ms']['p50'])} / {fmt(t['tick_work_ms']['p99'])}"],
        ["ticks started over a period late", t["late_ticks"]],
    ])
    lines += ["### Safety filter and tracking per joint", ""]
    codes = ", ".join(f"{k} {v}" for k, v in safety["interventions_by_code"].items()) or "none"
    lines += [f"Interventions by code (ticks): {codes}. Events: "
              + (", ".join(f"{k} {v}" for k, v in safety["events"].items()) or "none") + ".", ""]
    lines += _per_joint(run)
    if not run["tracking"]["arm_moved"]:
        lines += ["The arm did not move during this run (measured joints spanned "
                  f"{run['tracking']['actual_span_rad']:.2g} rad), so there is no operator motion to compare the "
                  "policy against. In a shadow trial, move the arm with its usual program or teleoperation while "
                  "vla-edge runs in shadow mode.", ""]
    health = run["health"]
    lines += ["### Health", "", "Seconds by state: " + ", ".join(f"{k} {v:g}" for k, v in health["seconds_by_state"].items())
              + f"; lowest velocity scale {health['min_velocity_scale']:g}.", ""]
    lines += [f"- {fmt(c['t'])} s: {c['state']} ({c['reason']})" for c in health["changes"]] + [""]
    if run.get("plots"):
        lines += ["### Plots", ""] + [f"![{p}]({p})" for p in run["plots"]] + [""]
    if run["notes"]:
        lines += ["### Notes", ""] + [f"- {n}" for n in run["notes"]] + [""]
    return lines


def render_markdown(report: dict[str, Any]) -> str:
    runs = report["runs"]
    lines = ["# Shadow-trial report", "",
             f"{len(runs)} run(s); generated by vla-edge {report['version']}. **Trial: {report['verdict']}**", "",
             "Readiness checks show where a trial fell short of its thresholds; passing them does not make a "
             "policy safe to run live — the safety filter and a person at the e-stop do that.", ""]
    lines += _trial_table(runs)
    for run in runs:
        lines += _run_section(run)
    return "\n".join(lines).rstrip() + "\n"
