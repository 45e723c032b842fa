"""Summaries of episodes.jsonl: success per task and suite with Wilson intervals, inference
latency, and each pack compared with the first (the parent) on the episodes both ran."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table

from .records import record_key
from .stats import paired, wilson


def _rate(outcomes: list[bool], confidence: float) -> dict[str, Any]:
    n, s = len(outcomes), int(sum(outcomes))
    low, high = wilson(s, n, confidence)
    return {"episodes": n, "successes": s, "rate": s / n if n else None, "ci_low": low, "ci_high": high}


def _latency(records: list[dict[str, Any]]) -> dict[str, Any]:
    means = [r["latency_ms"]["mean"] for r in records if r.get("latency_ms", {}).get("mean") is not None]
    p95 = [r["latency_ms"]["p95"] for r in records if r.get("latency_ms", {}).get("p95") is not None]
    n = sum(r.get("inferences", 0) for r in records)
    return {"inferences": int(n), "mean_ms": float(np.mean(means)) if means else None,
            "p95_ms_max_episode": float(np.max(p95)) if p95 else None}


def summarise(records: list[dict[str, Any]], labels: list[str], confidence: float = 0.95) -> dict[str, Any]:
    by_pack: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in records:
        by_pack[r["pack"]].append(r)
    packs = {}
    for label in labels:
        rs = by_pack.get(label, [])
        tasks: dict[int, list[dict[str, Any]]] = defaultdict(list)
        for r in rs:
            tasks[int(r["task_id"])].append(r)
        packs[label] = {
            "suite": _rate([bool(r["success"]) for r in rs], confidence),
            "tasks": {str(k): {"task": v[0]["task"], **_rate([bool(r["success"]) for r in v], confidence)}
                      for k, v in sorted(tasks.items())},
            "latency": _latency(rs),
        }
    return {"confidence": confidence, "packs": packs, "comparisons": _comparisons(by_pack, labels, confidence)}


def _comparisons(by_pack: dict[str, list[dict[str, Any]]], labels: list[str], confidence: float) -> list[dict[str, Any]]:
    if len(labels) < 2:
        return []
    parent = labels[0]
    base = {record_key(r)[1:]: r for r in by_pack.get(parent, [])}
    out = []
    for label in labels[1:]:
        other = {record_key(r)[1:]: r for r in by_pack.get(label, [])}
        common = sorted(set(base) & set(other))
        a = [bool(base[k]["success"]) for k in common]
        b = [bool(other[k]["success"]) for k in common]
        div = [base[k].get("divergence", {}).get(label) for k in common]
        div = [d for d in div if d and d.get("chunk_rms_mean") is not None]
        out.append({
            "parent": parent, "pack": label, "success": paired(a, b, confidence).to_dict(),
            "divergence_along_parent": {
                "episodes": len(div),
                "chunk_rms_mean": float(np.mean([d["chunk_rms_mean"] for d in div])) if div else None,
                "chunk_rms_max": float(np.max([d["chunk_rms_max"] for d in div])) if div else None,
                "executed_rms_mean": float(np.mean([d["executed_rms_mean"] for d in div])) if div else None,
                "paired_noise": all(d.get("paired_noise") for d in div) if div else None,
            },
        })
    return out


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.1f}%"


def print_summary(summary: dict[str, Any], console: Console | None = None) -> None:
    console = console or Console()
    conf = int(round(100 * summary["confidence"]))
    table = Table("pack", "task", "success", "episodes", f"{conf}% CI (Wilson)", "latency mean ms", title="success")
    for label, p in summary["packs"].items():
        for tid, t in p["tasks"].items():
            table.add_row(label, f"{tid}: {t['task'][:28]}", _pct(t["rate"]), str(t["episodes"]),
                          f"{_pct(t['ci_low'])} .. {_pct(t['ci_high'])}", "")
        s, lat = p["suite"], p["latency"]["mean_ms"]
        table.add_row(f"[bold]{label}[/bold]", "[bold]suite[/bold]", _pct(s["rate"]), str(s["episodes"]),
                      f"{_pct(s['ci_low'])} .. {_pct(s['ci_high'])}", "-" if lat is None else f"{lat:.1f}")
    console.print(table)
    if summary["comparisons"]:
        cmp = Table("pack vs parent", "episodes", "difference", f"{conf}% CI (Newcombe)", "only parent / only pack",
                    "McNemar p", "action RMS along parent", title="paired comparison (same seeds)")
        for c in summary["comparisons"]:
            s, d = c["success"], c["divergence_along_parent"]
            rms = "-" if d["chunk_rms_mean"] is None else f"{d['chunk_rms_mean']:.4g} (max {d['chunk_rms_max']:.4g})"
            cmp.add_row(f"{c['pack']} vs {c['parent']}", str(s["n"]), f"{100 * s['difference']:+.1f} pt",
                        f"{100 * s['ci_low']:+.1f} .. {100 * s['ci_high']:+.1f} pt", f"{s['only_a']} / {s['only_b']}",
                        f"{s['mcnemar_p']:.3g}", rms)
        console.print(cmp)
