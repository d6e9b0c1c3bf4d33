"""The run report: one self-contained HTML page with inline SVG charts (no external assets).

Charts: the P&L curve, the signal-to-order latency histogram, the loop jitter histogram, and the
health timeline (one row per component, coloured by score).  Inline SVG keeps the report free of
a plotting dependency and readable in any browser, offline.
"""

from __future__ import annotations

import html
import json
import math
from pathlib import Path
from typing import Any, Sequence

__all__ = ["write_report", "render_report", "line_chart", "histogram", "heat_strip"]

_W, _H, _PAD = 720, 240, 48


def _scale(lo: float, hi: float, a: float, b: float):
    span = (hi - lo) or 1.0
    return lambda v: a + (v - lo) / span * (b - a)


def _axis_labels(lo: float, hi: float, fmt: str) -> list[tuple[float, str]]:
    return [(lo + (hi - lo) * i / 4, format(lo + (hi - lo) * i / 4, fmt)) for i in range(5)]


def line_chart(xs: Sequence[float], ys: Sequence[float], *, title: str, x_label: str, y_label: str,
               y_fmt: str = ",.2f") -> str:
    """A line chart as an ``<svg>`` element."""
    if len(xs) < 2:
        return f"<p><em>{html.escape(title)}: not enough samples</em></p>"
    x0, x1 = min(xs), max(xs)
    y0, y1 = min(min(ys), 0.0), max(max(ys), 0.0)
    if y0 == y1:
        y0, y1 = y0 - 1, y1 + 1
    sx = _scale(x0, x1, _PAD, _W - 10)
    sy = _scale(y0, y1, _H - 30, 20)
    points = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in zip(xs, ys))
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{_W}" height="{_H}" role="img">',
             f"<title>{html.escape(title)}</title>",
             f'<line x1="{_PAD}" y1="{sy(0):.1f}" x2="{_W - 10}" y2="{sy(0):.1f}" stroke="#bbb" stroke-dasharray="4 3"/>',
             f'<polyline fill="none" stroke="#1f6feb" stroke-width="1.8" points="{points}"/>']
    for value, text in _axis_labels(y0, y1, y_fmt):
        parts.append(f'<text x="{_PAD - 4}" y="{sy(value) + 4:.1f}" font-size="10" text-anchor="end">{text}</text>')
    for value, text in _axis_labels(x0, x1, ".0f"):
        parts.append(f'<text x="{sx(value):.1f}" y="{_H - 14}" font-size="10" text-anchor="middle">{text}</text>')
    parts.append(f'<text x="{_W / 2}" y="{_H - 2}" font-size="11" text-anchor="middle">{html.escape(x_label)}</text>')
    parts.append(f'<text x="12" y="{_H / 2}" font-size="11" transform="rotate(-90 12 {_H / 2})" '
                 f'text-anchor="middle">{html.escape(y_label)}</text>')
    parts.append("</svg>")
    return "".join(parts)


def histogram(values: Sequence[float], *, title: str, x_label: str, bins: int = 30, log_x: bool = True) -> str:
    """A histogram as an ``<svg>`` element (log-spaced bins by default: latencies span decades)."""
    values = [v for v in values if v > 0 or not log_x]
    if not values:
        return f"<p><em>{html.escape(title)}: no samples</em></p>"
    lo, hi = min(values), max(values)
    if lo == hi:
        hi = lo * 1.1 + 1
    if log_x:
        edges = [math.exp(math.log(lo) + (math.log(hi) - math.log(lo)) * i / bins) for i in range(bins + 1)]
    else:
        edges = [lo + (hi - lo) * i / bins for i in range(bins + 1)]
    counts = [0] * bins
    for v in values:
        i = bins - 1
        for j in range(bins):
            if v < edges[j + 1]:
                i = j
                break
        counts[i] += 1
    top = max(counts)
    bar_w = (_W - _PAD - 10) / bins
    sy = _scale(0, top, _H - 30, 20)
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{_W}" height="{_H}" role="img">',
             f"<title>{html.escape(title)}</title>"]
    for i, c in enumerate(counts):
        x = _PAD + i * bar_w
        parts.append(f'<rect x="{x:.1f}" y="{sy(c):.1f}" width="{bar_w - 1:.1f}" height="{_H - 30 - sy(c):.1f}" '
                     f'fill="#2da44e"><title>{edges[i]:,.0f} - {edges[i + 1]:,.0f}: {c}</title></rect>')
    for i in range(0, bins + 1, max(1, bins // 5)):
        parts.append(f'<text x="{_PAD + i * bar_w:.1f}" y="{_H - 14}" font-size="10" text-anchor="middle">'
                     f'{edges[i]:,.0f}</text>')
    parts.append(f'<text x="{_PAD - 4}" y="24" font-size="10" text-anchor="end">{top}</text>')
    parts.append(f'<text x="{_W / 2}" y="{_H - 2}" font-size="11" text-anchor="middle">{html.escape(x_label)}</text>')
    parts.append("</svg>")
    return "".join(parts)


def _colour(score: float) -> str:
    # Red (0) through amber (0.5) to green (1).
    score = max(0.0, min(1.0, score))
    r = int(220 if score < 0.5 else 220 - (score - 0.5) * 2 * 175)
    g = int(60 + score * 2 * 110 if score < 0.5 else 170)
    return f"rgb({r},{g},70)"


def heat_strip(timeline: Sequence[dict[str, Any]], *, title: str) -> str:
    """Health timeline: one row per component, one cell per reading, coloured by score."""
    if not timeline:
        return f"<p><em>{html.escape(title)}: no readings</em></p>"
    names = [k for k in timeline[0] if k != "t"]
    row_h, label_w = 16, 150
    width = _W
    cell_w = (width - label_w - 10) / len(timeline)
    height = row_h * len(names) + 30
    t0 = timeline[0]["t"]
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img">',
             f"<title>{html.escape(title)}</title>"]
    for r, name in enumerate(names):
        y = r * row_h + 4
        parts.append(f'<text x="{label_w - 6}" y="{y + 12}" font-size="11" text-anchor="end">{html.escape(name)}</text>')
        for c, point in enumerate(timeline):
            score = float(point.get(name, 0.0))
            parts.append(f'<rect x="{label_w + c * cell_w:.1f}" y="{y}" width="{max(cell_w, 1):.1f}" '
                         f'height="{row_h - 2}" fill="{_colour(score)}"><title>{name} '
                         f'{point["t"] - t0:.1f} s: {score:.2f}</title></rect>')
    parts.append(f'<text x="{label_w}" y="{height - 6}" font-size="10">0 s</text>')
    parts.append(f'<text x="{width - 10}" y="{height - 6}" font-size="10" text-anchor="end">'
                 f'{timeline[-1]["t"] - t0:.0f} s</text>')
    parts.append("</svg>")
    return "".join(parts)


def render_report(summary: dict[str, Any], series: Sequence[dict[str, Any]], *,
                  signal_to_order_us: Sequence[float], jitter_us: Sequence[float],
                  health_timeline: Sequence[dict[str, Any]]) -> str:
    t0 = series[0]["t"] if series else 0.0
    xs = [p["t"] - t0 for p in series]
    pnl = summary.get("pnl", {})
    headline = [
        ("backend", summary.get("backend")), ("duration", f'{summary.get("duration_s", 0):.1f} s'),
        ("signals", summary.get("signals")), ("decisions", summary.get("decisions")),
        ("orders", summary.get("orders")), ("fills", summary.get("fills")),
        ("success rate", f'{summary.get("success_rate") or 0:.1%}'),
        ("net P&L", f'{pnl.get("net", 0.0):,.2f}'),
        ("loop jitter p99", f'{summary.get("loop", {}).get("jitter_us", {}).get("p99", 0):,.0f} µs'),
        ("signal→order p99", f'{summary.get("signal_to_order_us", {}).get("p99", 0):,.0f} µs'),
    ]
    rows = "".join(f"<tr><th>{html.escape(str(k))}</th><td>{html.escape(str(v))}</td></tr>" for k, v in headline)
    synthetic = ", ".join(summary.get("synthetic_feeds", [])) or "none"
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>sigfuse run report</title>
<style>body{{font-family:system-ui,sans-serif;margin:2em;max-width:780px}} th{{text-align:left;padding-right:1em}}
h2{{margin-top:1.6em;font-size:1.1em}} pre{{background:#f6f8fa;padding:1em;overflow:auto;font-size:11px}}</style>
</head><body>
<h1>sigfuse run report</h1>
<table>{rows}</table>
<p>Synthetic feeds (generated, not observed): {html.escape(synthetic)}.</p>
<h2>P&amp;L (net, quote currency)</h2>
{line_chart(xs, [p["pnl_net"] for p in series], title="net P&L", x_label="seconds", y_label="net P&L")}
<h2>Signal → order latency</h2>
{histogram(signal_to_order_us, title="signal to order latency", x_label="µs (log bins)")}
<h2>Loop cycle jitter</h2>
{histogram(jitter_us, title="cycle jitter", x_label="µs (log bins)")}
<h2>Health timeline</h2>
{heat_strip(health_timeline, title="health score per component")}
<h2>Summary</h2>
<pre>{html.escape(json.dumps(summary, indent=1, default=str))}</pre>
</body></html>
"""


def write_report(path: str | Path, summary: dict[str, Any], series: Sequence[dict[str, Any]], *,
                 signal_to_order_us: Sequence[float], jitter_us: Sequence[float],
                 health_timeline: Sequence[dict[str, Any]]) -> Path:
    path = Path(path)
    path.write_text(render_report(summary, series, signal_to_order_us=signal_to_order_us, jitter_us=jitter_us,
                                  health_timeline=health_timeline), encoding="utf-8")
    return path
