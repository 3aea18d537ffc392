"""The widgets' charts as SVG images: each chart is one element of the page, drawn by the browser's image decoder.

Plotly drew these three charts (a bar list, an age pyramid, stacked columns) until it cost 130 ms of the page's
main thread on each load while the map loads beside it, and a 1 MB script (`make bench-dashboard`). As HTML bars
they were 40-60 Dash components each, another 70 ms of Dash's render. Here each is one `<img>` of SVG sized in
percentages of its box, so it fills the widget at any width with text at its own size; the numbers are printed
on it, its `alt` and tooltip say them all, and the widget's PNG button draws the same image (`brain.js`).
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Sequence
from xml.sax.saxutils import escape, quoteattr

from dash import html

#: A series: its name (in the page's language), colour and one value per category.
Series = tuple[str, str, Sequence[float]]

FONT = "'WenQuanYi Micro Hei', 'Noto Sans CJK SC', 'Microsoft YaHei', sans-serif"
ROW = 20  # px per bar row
LEGEND = 20  # px of the legend line
INK, MUTED, RULE = "#1d2733", "#4a5a6a", "#c9d3de"


def _count(v: float) -> str:
    return f"{v:,.0f}"


def _text(x: str, y: float, s: str, anchor: str = "start", fill: str = INK, size: int = 11) -> str:
    return (f'<text x="{x}" y="{y:.1f}" text-anchor="{anchor}" fill="{fill}" font-size="{size}" '
            f'dominant-baseline="central">{escape(s)}</text>')


def _rect(x: str, y: float, w: str, h: float, fill: str) -> str:
    return f'<rect x="{x}" y="{y:.1f}" width="{w}" height="{h:.1f}" fill="{fill}"/>'


def _legend(series: Sequence[Series]) -> list[str]:
    out, x = [], 0.0
    for name, color, _ in series:  # keys one after another, each about as wide as its name
        out.append(f'<rect x="{x:.0f}" y="5" width="10" height="10" rx="2" fill="{color}"/>')
        out.append(_text(f"{x + 14:.0f}", 10, name))
        x += 26 + 7 * sum(2 if ord(c) > 0x2e80 else 1 for c in name)
    return out


def _pct(v: float) -> str:
    return f"{v:.3f}%"


def _image(kind: str, summary: str, height: float, parts: list[str]) -> html.Img:
    svg = (f'<svg xmlns="http://www.w3.org/2000/svg" font-family={quoteattr(FONT)}>'
           f"<title>{escape(summary)}</title>{''.join(parts)}</svg>")
    return html.Img(src="data:image/svg+xml;base64," + base64.b64encode(svg.encode()).decode(), alt=summary,
                    title=summary, className=f"chart chart-{kind}", style={"height": f"{height:.0f}px"},
                    **{"data-chart": kind})


def bars(categories: Sequence[str], values: Sequence[float], color: str, fmt: Callable[[float], str] = _count,
         empty: str = "—") -> html.Img | html.P:
    """Horizontal bars, one per category in the order given, each with its number after it."""
    if not categories:
        return html.P(empty, className="muted")
    top = max(values, default=0) or 1
    parts = []
    for k, (c, v) in enumerate(zip(categories, values)):
        y = k * ROW
        parts.append(_text("0", y + ROW / 2, c))
        parts.append(_rect("30%", y + 4, _pct(55 * v / top), ROW - 8, color))
        parts.append(_text(_pct(31 + 55 * v / top), y + ROW / 2, fmt(v), fill=MUTED))
    return _image("bars", "; ".join(f"{c} {fmt(v)}" for c, v in zip(categories, values)), len(categories) * ROW,
                  parts)


def pyramid(bands: Sequence[str], left: Series, right: Series, fmt: Callable[[float], str] = _count,
            empty: str = "—") -> html.Img | html.P:
    """A population pyramid: the oldest band on top, the left series growing leftwards, the right rightwards,
    on one scale, each bar's number at the chart's edge."""
    if not bands:
        return html.P(empty, className="muted")
    top = max(list(left[2]) + list(right[2]), default=0) or 1
    parts = _legend([left, right])
    for row, k in enumerate(reversed(range(len(bands)))):
        y, lv, rv = LEGEND + row * ROW, left[2][k], right[2][k]
        parts.append(_text("9%", y + ROW / 2, fmt(lv), anchor="end", fill=MUTED))
        parts.append(_rect(_pct(44 - 34 * lv / top), y + 4, _pct(34 * lv / top), ROW - 8, left[1]))
        parts.append(_text("50%", y + ROW / 2, bands[k], anchor="middle"))
        parts.append(_rect("56%", y + 4, _pct(34 * rv / top), ROW - 8, right[1]))
        parts.append(_text("91%", y + ROW / 2, fmt(rv), fill=MUTED))
    summary = "; ".join(f"{b} {left[0]} {fmt(lv)} {right[0]} {fmt(rv)}"
                        for b, lv, rv in zip(bands, left[2], right[2]))
    return _image("pyramid", summary, LEGEND + len(bands) * ROW, parts)


def stacked(columns: Sequence[str], series: Sequence[Series], fmt: Callable[[float], str] = _count,
            empty: str = "—", height: float = 170) -> html.Img | html.P:
    """Stacked columns: one per category (left to right as given), each series a segment, bottom up in the order
    given; a column's height is its total on one scale, printed over it."""
    if not columns:
        return html.P(empty, className="muted")
    totals = [sum(s[2][k] for s in series) for k in range(len(columns))]
    top = max(totals, default=0) or 1
    base, room = height - 16, height - 16 - LEGEND - 14  # the axis, and the tallest column
    slot = 100 / len(columns)
    parts = _legend(series)
    parts.append(f'<line x1="0" y1="{base}" x2="100%" y2="{base}" stroke="{RULE}"/>')
    for k, c in enumerate(columns):
        x, y = _pct(slot * (k + 0.15)), base
        for _, color, vals in series:
            h = room * vals[k] / top
            if h > 0:
                y -= h
                parts.append(_rect(x, y, _pct(slot * 0.7), h, color))
        mid = _pct(slot * (k + 0.5))
        parts.append(_text(mid, y - 7, fmt(totals[k]), anchor="middle", fill=MUTED, size=10))
        parts.append(_text(mid, base + 8, c, anchor="middle", size=10))
    summary = "; ".join(f"{c}: " + ", ".join(f"{name} {fmt(vals[k])}" for name, _, vals in series if vals[k])
                        for k, c in enumerate(columns))
    return _image("stacked", summary, height, parts)
