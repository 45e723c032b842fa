"""report.html: the whole report in one file that opens from disk (no server, no network).

Plots are embedded as base64 PNG and a simulator run's video as a base64 MP4 (or GIF), so the
file can be mailed or attached to a ticket as is. Text is escaped; nothing is fetched.
"""

from __future__ import annotations

import base64
import html
from pathlib import Path
from typing import Any

_MIME = {".png": "image/png", ".gif": "image/gif", ".mp4": "video/mp4"}
_STYLE = """
body{font-family:system-ui,sans-serif;margin:2em auto;max-width:70em;color:#222}
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ccc;padding:.2em .6em;text-align:left}
.pass{color:#1a7f37}.fail{color:#cf222e;font-weight:bold}.skip{color:#777}
.outcome{font-size:1.15em;background:#f4f4f4;padding:.6em;border-left:4px solid #0969da}
.held{border-left-color:#cf222e}img,video{max-width:100%}
"""


def data_uri(path: Path) -> str:
    mime = _MIME.get(path.suffix.lower())
    if mime is None:
        raise ValueError(f"{path}: cannot embed a {path.suffix} file")
    return f"data:{mime};base64,{base64.b64encode(path.read_bytes()).decode('ascii')}"


def _esc(value: Any) -> str:
    return html.escape("–" if value is None else (f"{value:.3g}" if isinstance(value, float) else str(value)))


def _checks(run: dict[str, Any]) -> str:
    rows = []
    for c in run["checks"]:
        cls, word = {True: ("pass", "pass"), False: ("fail", "FAIL"), None: ("skip", "not evaluated")}[c["passed"]]
        rows.append(f"<tr><td>{_esc(c['name'])}</td><td>{_esc(c['value'])}</td><td>{_esc(c['threshold'])}</td>"
                    f"<td class='{cls}'>{word}</td><td>{_esc(c['why'])}</td></tr>")
    return ("<table><tr><th>check</th><th>value</th><th>threshold</th><th>result</th><th>why</th></tr>"
            + "".join(rows) + "</table>")


def _media(folder: Path, files: list[str]) -> str:
    parts = []
    for name in files:
        path = folder / name
        if path.suffix == ".mp4":
            parts.append(f"<video controls loop muted autoplay src='{data_uri(path)}'></video>")
        else:
            parts.append(f"<img alt='{_esc(path.stem)}' src='{data_uri(path)}'>")
    return "".join(f"<p>{p}</p>" for p in parts)


def _run(run: dict[str, Any], folder: Path) -> str:
    held = " held" if run.get("arm_only_held") else ""
    timing = run["timing"]
    return "".join([
        f"<h2>{_esc(run['name'])}: {_esc(run['verdict'])}</h2>",
        f"<p class='outcome{held}'>{_esc(run.get('outcome'))}</p>",
        f"<p>{_esc(run['mode'])} run of {_esc(run['robot'])}, pack {_esc(run['pack'])} on target {_esc(run['target'])}, "
        f"prompt “{_esc(run['prompt'])}”; {timing['ticks']} ticks over {timing['duration_s']:.1f} s, "
        f"ended: {_esc(run['end_reason'])}.</p>",
        _checks(run),
        _media(folder, run.get("plots", []) + run.get("videos", [])),
        "".join(f"<p class='skip'>note: {_esc(n)}</p>" for n in run.get("notes", [])),
    ])


def render_html(report: dict[str, Any], folder: Path) -> str:
    """The report as one HTML document; `folder` holds the plot/video files the entries name."""
    body = "".join(_run(run, folder) for run in report["runs"])
    return (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>vla-edge shadow-trial report</title>"
            f"<style>{_STYLE}</style></head><body><h1>Shadow-trial report: {_esc(report['verdict'])}</h1>"
            f"{body}<p class='skip'>vla-edge {_esc(report.get('version'))}</p></body></html>\n")
