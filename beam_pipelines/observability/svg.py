"""Small, dependency-free SVG charts for the run report: bars, a time series with markers, a
histogram, and a layered graph. Every text is escaped; no script runs."""

from __future__ import annotations

import datetime as dt
import html
import math

__all__ = ['bar_chart', 'duration', 'graph', 'histogram', 'log_edges', 'time_series']

W, H, PAD = 720, 260, 48


def _svg(body: list[str], title: str, width: int = W, height: int = H) -> str:
    return (
        f'<svg class="chart" role="img" aria-label="{html.escape(title)}" '
        f'viewBox="0 0 {width} {height}" width="{width}" height="{height}" '
        'style="max-width:100%;height:auto" '
        f'xmlns="http://www.w3.org/2000/svg"><title>{html.escape(title)}</title>'
        + ''.join(body)
        + '</svg>'
    )


def _nice(x: float) -> str:
    if x >= 1e6:
        return f'{x / 1e6:.1f}M'
    if x >= 1e3:
        return f'{x / 1e3:.1f}k'
    return f'{x:.3g}'


def _axes(body, y_max: float, width: int = W, height: int = H) -> None:
    body.append(
        f'<line x1="{PAD}" y1="{height - PAD}" x2="{width - 10}" y2="{height - PAD}" '
        'stroke="#888"/>'
        f'<line x1="{PAD}" y1="10" x2="{PAD}" y2="{height - PAD}" stroke="#888"/>'
    )
    for i in range(5):
        v = y_max * i / 4
        y = height - PAD - (height - PAD - 10) * i / 4
        body.append(
            f'<text x="{PAD - 6}" y="{y + 4:.1f}" font-size="10" text-anchor="end">'
            f'{_nice(v)}</text>'
        )


def bar_chart(items: list[tuple[str, float]], title: str) -> str:
    """Labelled bars."""
    body: list[str] = []
    top = max((v for _, v in items), default=0) or 1
    _axes(body, top)
    slot = (W - PAD - 20) / max(len(items), 1)
    for i, (label, value) in enumerate(items):
        h = (H - PAD - 10) * value / top
        x = PAD + 6 + i * slot
        body.append(
            f'<rect class="bar" x="{x:.1f}" y="{H - PAD - h:.1f}" width="{slot * 0.7:.1f}" '
            f'height="{h:.1f}" fill="#4e79a7"><title>{html.escape(label)}: {value:,.0f}'
            '</title></rect>'
            f'<text x="{x + slot * 0.35:.1f}" y="{H - PAD + 14}" font-size="10" '
            f'text-anchor="middle">{html.escape(label[:14])}</text>'
        )
    return _svg(body, title)


def time_series(
    points: list[tuple[dt.datetime, float]],
    title: str,
    markers: list[tuple[dt.datetime, float]] = (),
) -> str:
    """A line over time, with red markers (anomalies) on it."""
    body: list[str] = []
    if not points:
        body.append(f'<text x="{W / 2}" y="{H / 2}" text-anchor="middle">no data</text>')
        return _svg(body, title)
    t0, t1 = points[0][0].timestamp(), points[-1][0].timestamp()
    span = (t1 - t0) or 1.0
    top = max(v for _, v in points) or 1

    def xy(t, v):
        x = PAD + (W - PAD - 20) * (t.timestamp() - t0) / span
        y = H - PAD - (H - PAD - 10) * v / top
        return x, y

    _axes(body, top)
    path = ' '.join(f'{x:.1f},{y:.1f}' for x, y in (xy(t, v) for t, v in points))
    body.append(f'<polyline class="series" fill="none" stroke="#4e79a7" points="{path}"/>')
    for t, v in markers:
        x, y = xy(t, v)
        body.append(
            f'<circle class="marker" cx="{x:.1f}" cy="{y:.1f}" r="4" fill="#e15759">'
            f'<title>anomaly at {t:%Y-%m-%d %H:%M}: {v:,.4g}</title></circle>'
        )
    for t, anchor in ((points[0][0], 'start'), (points[-1][0], 'end')):
        x, _ = xy(t, 0)
        body.append(
            f'<text x="{x:.1f}" y="{H - PAD + 14}" font-size="10" text-anchor="{anchor}">'
            f'{t:%Y-%m-%d %H:%M}</text>'
        )
    return _svg(body, title)


def duration(secs: float) -> str:
    """``850ms``, ``42s``, ``13min``, ``5.2h``, ``945d``."""
    for unit, size in (('d', 86400), ('h', 3600), ('min', 60), ('s', 1)):
        if secs >= size:
            return f'{secs / size:.3g}{unit}'
    return f'{secs * 1000:.3g}ms'


def histogram(edges: list[float], counts: list[int], title: str, label=_nice) -> str:
    """Bars over ranges of values (``len(edges) == len(counts) + 1``), each labelled by its
    lower edge."""
    items = [(f'≥{label(edges[i])}', counts[i]) for i in range(len(counts))]
    return bar_chart(items, title)


def graph(nodes: list[str], edges: list[tuple[int, int]], title: str) -> str:
    """A layered drawing of a directed acyclic graph (each node at its longest-path depth)."""
    depth = [0] * len(nodes)
    for _ in nodes:  # longest path by relaxation (small graphs)
        for a, b in edges:
            depth[b] = max(depth[b], depth[a] + 1)
    layers: dict[int, list[int]] = {}
    for i, d in enumerate(depth):
        layers.setdefault(d, []).append(i)
    cols, rows = max(layers) + 1 if layers else 1, max((len(v) for v in layers.values()), default=1)
    bw, bh, gx, gy = 130, 26, 40, 14
    width, height = cols * (bw + gx) + 20, max(rows * (bh + gy) + 20, 80)
    pos = {}
    for d, members in layers.items():
        for j, i in enumerate(members):
            pos[i] = (10 + d * (bw + gx), 10 + j * (bh + gy))
    body = [
        '<defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="6" '
        'markerHeight="6" orient="auto"><path d="M0,0 L10,5 L0,10 z" fill="#888"/></marker></defs>'
    ]
    for a, b in edges:
        (xa, ya), (xb, yb) = pos[a], pos[b]
        body.append(
            f'<line x1="{xa + bw}" y1="{ya + bh / 2}" x2="{xb}" y2="{yb + bh / 2}" '
            'stroke="#888" marker-end="url(#arrow)"/>'
        )
    for i, name in enumerate(nodes):
        x, y = pos[i]
        body.append(
            f'<rect class="node" x="{x}" y="{y}" width="{bw}" height="{bh}" rx="4" '
            f'fill="#f1f3f7" stroke="#4e79a7"/><text x="{x + bw / 2}" y="{y + 17}" '
            f'font-size="11" text-anchor="middle">{html.escape(name[:20])}</text>'
        )
    return _svg(body, title, width, height)


def log_edges(low: float, high: float, bins: int = 12) -> list[float]:
    """Edges spaced evenly in log scale (for lags from milliseconds to days)."""
    low, high = max(low, 1e-3), max(high, low * 10)
    a, b = math.log10(low), math.log10(high)
    return [10 ** (a + (b - a) * i / bins) for i in range(bins + 1)]
