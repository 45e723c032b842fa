"""`vla-edge bench --pack DIR --target T [--threads N] [--runs N] --json OUT`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.table import Table

console = Console()


def bench(
    pack: Annotated[str, typer.Option(help="Pack directory, or 'demo'")] = "demo",
    target: Annotated[str, typer.Option(help="Target to time, or auto: the fastest that can run the pack here")] = "auto",
    threads: Annotated[Optional[int], typer.Option(help="Threads (default: all usable CPUs)")] = None,
    runs: Annotated[int, typer.Option(help="Timed runs after warm-up")] = 10,
    warmup: Annotated[int, typer.Option(help="Untimed warm-up runs")] = 2,
    reference: Annotated[Optional[bool], typer.Option("--reference/--no-reference",
                                                      help="Also time the reference target (default: packs <= 1 GB)")] = None,
    json_out: Annotated[Optional[Path], typer.Option("--json", help="Write every number to this JSON file")] = None,
    cpu_weights: Annotated[Optional[str], typer.Option(
        help="x86 target: 'mapped' (default: zero-copy file mapping, fastest load), 'repacked' "
             "(ggml's interleaved layouts, a copy at load) or 'anonymous' (private copy on huge pages)")] = None,
) -> None:
    """Per-stage latency, memory and efficiency, with ratios against baselines measured in this run."""
    from ..bench import run_bench
    from ..packs.demo import resolve_pack

    result = run_bench(resolve_pack(pack), target=target, threads=threads, runs=runs, warmup=warmup,
                       reference=reference, target_options={"cpu_weights": cpu_weights} if cpu_weights else None)
    d = result.data
    if target == "auto":
        console.print(f"target {d['target']['name']}: {d['target']['chosen_because']}")
    table = Table(title=f"{d['pack']['name']} ({d['pack']['recipe']}, {d['pack']['bits_per_weight']:.2f} bpw) "
                        f"on {d['target']['name']}, {d['target']['backend'].get('threads', '?')} threads, {runs} runs")
    for col in ("stage", "p50 ms", "p95 ms", "max ms"):
        table.add_column(col, justify="left" if col == "stage" else "right")
    for stage, s in d["latency_ms"].items():
        table.add_row(stage, f"{s['p50']:.2f}", f"{s['p95']:.2f}", f"{s['max']:.2f}")
    console.print(table)
    mem = d["memory"]
    console.print(f"load {d['load_s']:.2f} s; peak RSS {mem['peak_rss_bytes'] / 1e6:.0f} MB = "
                  f"{mem['peak_rss_over_pack']:.2f} x pack size ({d['pack']['pack_bytes'] / 1e6:.1f} MB)")
    ref = d.get("reference")
    if ref:
        console.print(f"reference target: {ref['skipped']}" if "skipped" in ref else
                      f"vs reference target (same pack, same inputs): {ref['speedup_total_p50']:.1f}x faster "
                      f"(reference p50 {ref['latency_ms']['total']['p50']:.1f} ms)")
    ceiling = d.get("ceiling")
    if ceiling:
        console.print(f"vs ggml matmul alone on the model's {len(ceiling['shapes'])} shapes: "
                      f"{ceiling['pipeline_over_ceiling']:.2f} (ceiling {ceiling['gflops']:.0f} GFLOP/s)")
    for goal, met, detail in result.goals:
        mark = "[green]met[/green]" if met else "[red]not met[/red]"
        console.print(f"goal {goal}: {mark} — {detail}")
    if json_out:
        d["goals"] = [{"goal": g, "met": m, "detail": t} for g, m, t in result.goals]
        json_out.parent.mkdir(parents=True, exist_ok=True)
        tmp = json_out.with_suffix(json_out.suffix + ".tmp")
        tmp.write_text(json.dumps(d, indent=1))
        tmp.replace(json_out)
        console.print(f"wrote {json_out}")


def register(app: typer.Typer) -> None:
    app.command("bench")(bench)
