"""The widgets' charts as plain HTML: bars are elements sized in CSS, drawn with the page in one layout pass.

Plotly drew these three charts (a bar list, an age pyramid, stacked columns) until it cost 130 ms of the page's
main thread on each load, while the map loads beside it (`make bench-dashboard`), and a 1 MB script. Each chart
here is a few dozen elements: every bar carries its number in a tooltip and the chart one accessible summary,
the legend names every series, and the widget's PNG button draws the same elements into an image (`brain.js`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from dash import html

#: A series: its name (in the page's language), colour and one value per category.
Series = tuple[str, str, Sequence[float]]


def _count(v: float) -> str:
    return f"{v:,.0f}"


def _pct(v: float, top: float, room: float = 100.0) -> str:
    return f"{room * v / top:.2f}%" if top > 0 else "0%"  # of the bar's lane


def _legend(series: Sequence[Series]) -> html.Div:
    return html.Div(className="chart-legend", children=[
        html.Span([html.I(className="swatch", style={"background": color}), name], className="key")
        for name, color, _ in series])


def _chart(kind: str, summary: str, children: list) -> html.Div:
    return html.Div(className=f"chart chart-{kind}", role="img", title=summary, **{"aria-label": summary},
                    children=children)


def bars(categories: Sequence[str], values: Sequence[float], color: str, fmt: Callable[[float], str] = _count,
         empty: str = "—") -> html.Div:
    """Horizontal bars, one per category, longest first as given; each with its number after it."""
    if not categories:
        return html.P(empty, className="muted")
    top = max(values, default=0)
    rows = [html.Div(className="chart-row", children=[
        html.Span(c, className="chart-label", title=c),
        html.Span(className="lane", children=[
            html.Span(className="bar", style={"width": _pct(v, top), "background": color}, title=f"{c}: {fmt(v)}")]),
        html.Span(fmt(v), className="chart-value")]) for c, v in zip(categories, values)]
    return _chart("bars", "; ".join(f"{c} {fmt(v)}" for c, v in zip(categories, values)), rows)


def pyramid(bands: Sequence[str], left: Series, right: Series, fmt: Callable[[float], str] = _count,
            empty: str = "—") -> html.Div:
    """A population pyramid: the oldest band on top, the left series growing leftwards, the right rightwards,
    on one scale."""
    if not bands:
        return html.P(empty, className="muted")
    top = max(list(left[2]) + list(right[2]), default=0)
    rows = []
    for k in reversed(range(len(bands))):
        b, lv, rv = bands[k], left[2][k], right[2][k]
        rows.append(html.Div(className="pyr-row", children=[
            html.Span(fmt(lv), className="chart-value rev"),
            html.Span(className="lane rev", children=[
                html.Span(className="bar", style={"width": _pct(lv, top), "background": left[1]},
                          title=f"{b} {left[0]}: {fmt(lv)}")]),
            html.Span(b, className="chart-label"),
            html.Span(className="lane", children=[
                html.Span(className="bar", style={"width": _pct(rv, top), "background": right[1]},
                          title=f"{b} {right[0]}: {fmt(rv)}")]),
            html.Span(fmt(rv), className="chart-value")]))
    summary = "; ".join(f"{b} {left[0]} {fmt(lv)} {right[0]} {fmt(rv)}"
                        for b, lv, rv in zip(bands, left[2], right[2]))
    return _chart("pyramid", summary, [_legend([left, right]), html.Div(rows, className="pyr")])


def stacked(columns: Sequence[str], series: Sequence[Series], fmt: Callable[[float], str] = _count,
            empty: str = "—") -> html.Div:
    """Stacked columns: one column per category (left to right as given), each series a segment, bottom up in
    the order given; a column's height is its total on one scale."""
    if not columns:
        return html.P(empty, className="muted")
    totals = [sum(s[2][k] for s in series) for k in range(len(columns))]
    top = max(totals, default=0)
    cols = []
    for k, c in enumerate(columns):
        segs = [html.Span(className="bar", style={"height": _pct(v, totals[k]), "background": color},
                          title=f"{c} {name}: {fmt(v)}") for name, color, vals in series if (v := vals[k])]
        cols.append(html.Div(className="col", children=[
            html.Span(fmt(totals[k]), className="chart-value"),
            html.Div(list(reversed(segs)), className="stack", style={"height": _pct(totals[k], top, 75)}),
            html.Span(c, className="chart-label", title=c)]))
    summary = "; ".join(f"{c}: " + ", ".join(f"{name} {fmt(vals[k])}" for name, _, vals in series if vals[k])
                        for k, c in enumerate(columns))
    return _chart("stacked", summary, [_legend(series), html.Div(cols, className="cols")])
