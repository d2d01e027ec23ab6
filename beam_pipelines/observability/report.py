"""``report.html``: one self-contained page per run, written next to its outputs.

Built from the run's own files (``run_summary.json``, ``aggregates/``, ``events/``,
``dead_letter/``, ``anomalies/``, ``quality/``, ``lineage.mmd``), so it is the same whatever
runner wrote them: counts per stage, dead letters by stage and reason with examples, events per
window over event time with the anomalies on it, the lag distribution, the quality table and
the pipeline graph. Charts are inline SVG: no script, no network, nothing to load.
"""

from __future__ import annotations

import collections
import datetime as dt
import html
import json
import re

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from apache_beam.io.filesystems import FileSystems

from beam_pipelines.observability import svg
from beam_pipelines.redaction import redact

__all__ = ['MERMAID_FILE', 'REPORT_FILE', 'build_report', 'write_report']

REPORT_FILE = 'report.html'
# The pipeline graph beside the outputs, written with lineage (``observability.lineage``). Named
# here, with the report that shows it, so run files are handled without importing openlineage.
MERMAID_FILE = 'lineage.mmd'
EXAMPLES = 3
_STYLE = """
body{font-family:system-ui,sans-serif;margin:24px;color:#222;max-width:1100px}
h1{font-size:22px}h2{font-size:17px;margin-top:28px;border-bottom:1px solid #ddd}
table{border-collapse:collapse;font-size:13px}td,th{border:1px solid #ddd;padding:4px 8px;
text-align:left;vertical-align:top}.ok{color:#2a7}.bad{color:#c33;font-weight:bold}
code,pre{font-size:12px;background:#f6f6f6;padding:2px 4px;white-space:pre-wrap;
word-break:break-all}.muted{color:#777}
"""


def _join(root: str, *parts: str) -> str:
    return FileSystems.join(root, *parts)


def _exists(path: str) -> bool:
    return bool(FileSystems.match([path])[0].metadata_list)


def _table(path: str, columns: list[str]):
    files = [m.path for m in FileSystems.match([path + '/*.parquet'])[0].metadata_list]
    if not files:
        return None
    parts = []
    for f in sorted(files):
        with FileSystems.open(f) as fh:
            # One thread: the report runs as the process ends, and Arrow's pool must not outlive it.
            parts.append(
                pq.read_table(pa.BufferReader(fh.read()), columns=columns, use_threads=False)
            )
    return pa.concat_tables(parts)


def _dead_letters(root: str):
    by_reason: dict[tuple[str, str], list] = collections.defaultdict(list)
    counts: collections.Counter = collections.Counter()
    for m in FileSystems.match([_join(root, 'dead_letter', '*')])[0].metadata_list:
        with FileSystems.open(m.path) as f:
            for line in f.read().decode('utf-8', 'replace').splitlines():
                if not line.strip():
                    continue
                d = json.loads(line)
                key = (d.get('stage', ''), d.get('error_type', ''))
                counts[key] += 1
                if len(by_reason[key]) < EXAMPLES:
                    by_reason[key].append(d)
    return counts, by_reason


def _section(title: str, body: str) -> str:
    return f'<section><h2>{html.escape(title)}</h2>{body}</section>'


def _counts_section(summary: dict) -> str:
    c = summary.get('counts', {})
    order = [
        'read',
        'valid',
        'dead_letter',
        'duplicates',
        'late',
        'erased',
        'aggregates',
        'anomalies',
    ]
    items = [(k, c[k]) for k in order if k in c] + [
        (k, v) for k, v in sorted(c.items()) if k not in order
    ]
    ok = summary.get('balanced')
    status = (
        '<p class="ok">read = valid + dead_letter + duplicates: holds</p>'
        if ok
        else f'<p class="bad">records unaccounted for: {summary.get("unaccounted")}</p>'
    )
    rows = ''.join(f'<tr><td>{html.escape(k)}</td><td>{v:,}</td></tr>' for k, v in items)
    chart = svg.bar_chart(items[:10], 'Records per stage')
    return _section('Records per stage', status + chart + f'<table>{rows}</table>')


def _dead_letter_section(root: str) -> str:
    counts, examples = _dead_letters(root)
    if not counts:
        return _section('Dead letters', '<p class="ok">none</p>')
    rows = []
    for (stage, kind), n in counts.most_common():
        shown = ''.join(
            f'<div><code>{html.escape(str(d.get("error_message", ""))[:300])}</code><br>'
            f'<span class="muted">payload:</span> <code>'
            f'{html.escape(str(d.get("payload", ""))[:200])}</code></div>'
            for d in examples[(stage, kind)]
        )
        rows.append(
            f'<tr><td>{html.escape(stage)}</td><td>{html.escape(kind)}</td><td>{n:,}</td>'
            f'<td>{shown}</td></tr>'
        )
    chart = svg.bar_chart(
        [(f'{s}:{k}', n) for (s, k), n in counts.most_common(10)], 'Dead letters by reason'
    )
    head = '<tr><th>stage</th><th>error type</th><th>count</th><th>examples</th></tr>'
    return _section('Dead letters', chart + f'<table>{head}{"".join(rows)}</table>')


def _windows_section(root: str) -> str:
    aggregates = _table(_join(root, 'aggregates'), ['window_start', 'count'])
    if aggregates is None or aggregates.num_rows == 0:
        return _section('Events per window', '<p class="muted">no aggregates</p>')
    per = aggregates.group_by('window_start', use_threads=False).aggregate([('count', 'sum')])
    per = per.sort_by('window_start')
    points = list(zip(per.column('window_start').to_pylist(), per.column('count_sum').to_pylist()))
    totals = dict(points)
    markers = []
    anomalies = (
        _table(_join(root, 'anomalies'), None) if _exists(_join(root, 'anomalies')) else None
    )
    if anomalies is not None and 'is_anomaly' in anomalies.column_names:
        flagged = anomalies.filter(pc.fill_null(anomalies.column('is_anomaly'), False))
        for t in flagged.column('event_time').to_pylist():
            markers.append((t, totals.get(t, 0)))
    note = f'<p>{len(points):,} windows; {len(markers):,} anomalies (red).</p>'
    return _section(
        'Events per window (event time)',
        note + svg.time_series(points, 'Events per window', markers),
    )


def _lag_section(root: str, finished: dt.datetime | None) -> str:
    events = _table(_join(root, 'events'), ['timestamp'])
    if events is None or events.num_rows == 0 or finished is None:
        return _section('Lag', '<p class="muted">no events</p>')
    micros = pc.cast(events.column('timestamp'), 'int64').to_numpy(zero_copy_only=False)
    lag = np.maximum(finished.timestamp() - micros / 1e6, 1e-3)
    edges = svg.log_edges(float(lag.min()), float(lag.max()))
    counts, _ = np.histogram(lag, bins=edges)
    p50, p95 = np.percentile(lag, [50, 95])
    text = (
        f'<p>Run end minus event time: p50 {svg.duration(p50)}, p95 {svg.duration(p95)}, '
        f'max {svg.duration(float(lag.max()))}.</p>'
    )
    return _section(
        'Lag distribution', text + svg.histogram(edges, counts.tolist(), 'Lag', svg.duration)
    )


def _quality_section(root: str) -> str:
    table = _table(_join(root, 'quality'), None)
    if table is None:
        return ''
    names = ['source', 'score', 'completeness', 'validity', 'uniqueness', 'timeliness']
    names += ['consistency', 'accuracy', 'breaches']
    head = ''.join(f'<th>{n}</th>' for n in names)
    rows = []
    for r in table.to_pylist():
        cells = []
        for n in names:
            v = r.get(n)
            text = f'{v:.4f}' if isinstance(v, float) else ('' if v is None else str(v))
            bad = n == 'breaches' and v not in (None, '[]')
            cells.append(f'<td class="{"bad" if bad else ""}">{html.escape(redact(text))}</td>')
        rows.append(f'<tr>{"".join(cells)}</tr>')
    return _section('Data quality', f'<table><tr>{head}</tr>{"".join(rows)}</table>')


def _lineage_section(root: str) -> str:
    path = _join(root, MERMAID_FILE)
    if not _exists(path):
        return ''
    with FileSystems.open(path) as f:
        text = f.read().decode()
    nodes, index, edges = [], {}, []
    for line in text.splitlines():
        node = re.match(r'\s*(s\d+)\["(.*)"\]$', line)
        edge = re.match(r'\s*(s\d+) --> (s\d+)$', line)
        if node:
            index[node.group(1)] = len(nodes)
            nodes.append(node.group(2))
        elif edge and edge.group(1) in index and edge.group(2) in index:
            edges.append((index[edge.group(1)], index[edge.group(2)]))
    body = svg.graph(nodes, edges, 'Pipeline graph')
    body += f'<details><summary>Mermaid source</summary><pre>{html.escape(text)}</pre></details>'
    return _section('Lineage', body)


def build_report(root: str) -> str:
    """The report page of the run whose outputs are under ``root``."""
    with FileSystems.open(_join(root, 'run_summary.json')) as f:
        summary = json.loads(f.read())
    finished = None
    if summary.get('finished_at'):
        finished = dt.datetime.strptime(summary['finished_at'], '%Y-%m-%dT%H:%M:%SZ').replace(
            tzinfo=dt.UTC
        )
    pipeline = html.escape(str(summary.get('pipeline', 'pipeline')))
    origin = html.escape(redact(str(summary.get('input', ''))))
    parts = [
        f'<h1>{pipeline} run report</h1>',
        f'<p>Input <code>{origin}</code>; finished {html.escape(summary.get("finished_at", ""))}.'
        '</p>',
        _counts_section(summary),
        _dead_letter_section(root),
        _windows_section(root),
        _lag_section(root, finished),
        _quality_section(root),
        _lineage_section(root),
    ]
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        f'<title>{pipeline} run report</title><style>{_STYLE}</style></head><body>'
        + ''.join(parts)
        + '</body></html>\n'
    )


def write_report(root: str) -> str:
    """Writes ``report.html`` under ``root``; returns its path."""
    path = _join(root, REPORT_FILE)
    page = build_report(root)
    with FileSystems.create(path, 'text/html') as f:
        f.write(page.encode('utf-8'))
    return path
