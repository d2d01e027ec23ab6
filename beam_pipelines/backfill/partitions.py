"""Date partitions for reruns: parsing the range, stepping through it, filling path templates.

No Beam here. A partition is named by its start (``2026-11-01`` daily, ``2026-11-01T05``
hourly), and a launcher flag such as ``--input 'events/dt={date}/*.jsonl'`` is filled with its
fields: ``{date}`` (YYYY-MM-DD), ``{year}``, ``{month}``, ``{day}``, ``{hour}`` and
``{partition}`` (the name).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
import string

__all__ = ['STEPS', 'Partition', 'fill', 'parse_day', 'partitions']

STEPS = {'daily': dt.timedelta(days=1), 'hourly': dt.timedelta(hours=1)}
FIELDS = ('date', 'year', 'month', 'day', 'hour', 'partition')
_RELATIVE = re.compile(r'^-(\d+)([dh])$')


@dataclasses.dataclass(frozen=True, order=True)
class Partition:
    start: dt.datetime
    step: str

    @property
    def name(self) -> str:
        return self.start.strftime('%Y-%m-%d' if self.step == 'daily' else '%Y-%m-%dT%H')

    def fields(self) -> dict[str, str]:
        s = self.start
        return {
            'date': s.strftime('%Y-%m-%d'),
            'year': f'{s.year:04d}',
            'month': f'{s.month:02d}',
            'day': f'{s.day:02d}',
            'hour': f'{s.hour:02d}',
            'partition': self.name,
        }


def parse_day(text: str, step: str, now: dt.datetime | None = None) -> dt.datetime:
    """A partition start: ``2026-11-01``, ``2026-11-01T05`` (hourly), ``today``,
    ``yesterday`` or ``-3d`` / ``-6h`` (relative to ``now``, UTC).

    Raises:
        ValueError: naming the text, for anything else.
    """
    now = now or dt.datetime.now(dt.UTC).replace(tzinfo=None)
    midnight = now.replace(hour=0, minute=0, second=0, microsecond=0)
    hour = now.replace(minute=0, second=0, microsecond=0)
    base = midnight if step == 'daily' else hour
    if text == 'today':
        return midnight
    if text == 'yesterday':
        return midnight - dt.timedelta(days=1)
    relative = _RELATIVE.match(text)
    if relative:
        n, unit = int(relative.group(1)), relative.group(2)
        return base - (dt.timedelta(days=n) if unit == 'd' else dt.timedelta(hours=n))
    for fmt in ('%Y-%m-%d', '%Y-%m-%dT%H'):
        try:
            return dt.datetime.strptime(text, fmt)
        except ValueError:
            continue
    raise ValueError(
        f'{text!r} is not a date (YYYY-MM-DD, YYYY-MM-DDTHH, today, yesterday, -Nd, -Nh)'
    )


def partitions(start: dt.datetime, end: dt.datetime, step: str) -> list[Partition]:
    """Every partition from ``start`` to ``end``, both included.

    Raises:
        ValueError: an unknown step, or ``end`` before ``start``.
    """
    if step not in STEPS:
        raise ValueError(f'step {step!r}: expected one of {sorted(STEPS)}')
    if end < start:
        raise ValueError(f'--to {end:%Y-%m-%d %H:%M} is before --from {start:%Y-%m-%d %H:%M}')
    if step == 'daily':
        start = start.replace(hour=0)
    out, at = [], start
    while at <= end:
        out.append(Partition(at, step))
        at += STEPS[step]
    return out


def fill(arg: str, partition: Partition) -> str:
    """``arg`` with its ``{field}``s filled (``{{``/``}}`` for literal braces).

    Raises:
        ValueError: a field that does not exist.
    """
    names = {name for _, name, _, _ in string.Formatter().parse(arg) if name is not None}
    unknown = names - set(FIELDS)
    if unknown:
        raise ValueError(f'{arg!r}: unknown field(s) {sorted(unknown)} (known: {FIELDS})')
    return arg.format(**partition.fields()) if names else arg
