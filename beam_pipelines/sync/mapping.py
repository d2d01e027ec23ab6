"""The transformation step between source and destination: rename, cast, transform, project.

Applied to each batch in this order: ``rename`` (``old=new``), ``cast`` (``col=type``, Arrow
type names: ``string``, ``int64``, ``float64``, ``bool``, ``timestamp[us, tz=UTC]``, ...),
``transform`` (a ``module:function`` taking and returning a ``pyarrow.Table``), then the
``columns`` projection (names after the rename). Deletes (CDC) carry only the key: they get the
rename and the casts of the key columns, not the transform.

A transform rejects rows either by raising (the batch is split in halves until the offending
rows stand alone; each becomes a failure with the error's message) or, vectorised, by returning
a string column ``_reject``: rows where it is not null are failures with that message, the
others go on without the column. Failures are never dropped: the runner dead-letters them.
"""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Callable
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

__all__ = ['REJECT_COLUMN', 'Mapping', 'bisect', 'load_transform', 'parse_pairs']

REJECT_COLUMN = '_reject'
Rejected = list[tuple[dict[str, Any], str]]  # (row, why)


def parse_pairs(text: str | None, flag: str) -> dict[str, str]:
    """``'a=b,c=d'`` as ``{'a': 'b', 'c': 'd'}``.

    Raises:
        ValueError: an item without ``=`` or with an empty side.
    """
    pairs = {}
    for item in filter(None, (x.strip() for x in (text or '').split(','))):
        left, eq, right = (s.strip() for s in item.partition('='))
        if not (eq and left and right):
            raise ValueError(f'{flag} takes name=value pairs separated by commas, got {item!r}')
        pairs[left] = right
    return pairs


def load_transform(spec: str) -> Callable[[pa.Table], pa.Table]:
    """Imports ``module:function``.

    Raises:
        ValueError: not of that form, or not importable, or not callable.
    """
    module, colon, name = spec.partition(':')
    if not (colon and module and name):
        raise ValueError(f'--transform must be module:function, got {spec!r}')
    try:
        fn = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as exc:
        raise ValueError(f'--transform {spec!r}: {exc}') from None
    if not callable(fn):
        raise ValueError(f'--transform {spec!r} is not callable')
    return fn


def _arrow_type(name: str) -> pa.DataType:
    try:
        return pa.type_for_alias(name)
    except ValueError:
        pass
    if name.startswith('timestamp'):  # type_for_alias knows no parameters
        unit = name.split('[', 1)[-1].split(',')[0].strip(' ]') if '[' in name else 'us'
        tz = name.split('tz=', 1)[1].strip(' ]') if 'tz=' in name else None
        return pa.timestamp(unit, tz=tz)
    raise ValueError(f'--cast: unknown Arrow type {name!r}')


@dataclasses.dataclass(frozen=True)
class Mapping:
    """How source batches become destination batches.

    Attributes:
        rename: source name -> destination name.
        casts: destination column -> Arrow type name.
        transform: an optional ``pyarrow.Table -> pyarrow.Table`` function.
        columns: the destination columns to keep, in order (empty: all).
    """

    rename: dict[str, str] = dataclasses.field(default_factory=dict)
    casts: dict[str, str] = dataclasses.field(default_factory=dict)
    transform: Callable[[pa.Table], pa.Table] | None = None
    columns: tuple[str, ...] = ()

    def __post_init__(self):
        for name in self.casts.values():
            _arrow_type(name)  # refuse an unknown type before anything is read

    def key(self, source_key: tuple[str, ...]) -> tuple[str, ...]:
        """The destination key: the source key, renamed."""
        key = tuple(self.rename.get(k, k) for k in source_key)
        dropped = [k for k in key if self.columns and k not in self.columns]
        if dropped:
            raise ValueError(f'--columns leaves out key columns {dropped}')
        return key

    def check(self, source_columns: tuple[str, ...]) -> None:
        """Raises ValueError for renames of unknown columns, or (without a transform) casts or
        a projection of columns that will not exist."""
        unknown = [c for c in self.rename if c not in source_columns]
        if unknown:
            raise ValueError(f'--rename: no source columns {unknown}')
        if self.transform is None:
            names = {self.rename.get(c, c) for c in source_columns}
            missing = [c for c in (*self.casts, *self.columns) if c not in names]
            if missing:
                raise ValueError(f'--cast/--columns name unknown columns {missing}')

    def _renamed(self, table: pa.Table) -> pa.Table:
        if not self.rename:
            return table
        return table.rename_columns([self.rename.get(c, c) for c in table.column_names])

    def _cast(self, table: pa.Table) -> pa.Table:
        for name, type_name in self.casts.items():
            i = table.schema.get_field_index(name)
            if i >= 0:
                table = table.set_column(i, name, pc.cast(table.column(i), _arrow_type(type_name)))
        return table

    def apply(self, table: pa.Table) -> tuple[pa.Table, Rejected]:
        """Maps one batch.

        Returns:
            The destination rows, and the rows rejected with why (rename and casts applied).

        Raises:
            Whatever the transform or a cast raises (see :func:`bisect`).
        """
        table = self._cast(self._renamed(table))
        rejected: Rejected = []
        if self.transform is not None:
            table = self.transform(table)
            if not isinstance(table, pa.Table):
                raise TypeError(f'the transform returned {type(table).__name__}, not a Table')
            if REJECT_COLUMN in table.column_names:
                why = table.column(REJECT_COLUMN)
                bad = pc.is_valid(why)
                table = table.drop_columns([REJECT_COLUMN])
                rejected = list(
                    zip(table.filter(bad).to_pylist(), why.filter(bad).to_pylist(), strict=True)
                )
                table = table.filter(pc.invert(bad))
        if self.columns:
            table = table.select(list(self.columns))
        return table, rejected

    def apply_to_keys(self, keys: pa.Table) -> pa.Table:
        """Maps the key columns of deletes: the rename and the key columns' casts."""
        return self._cast(self._renamed(keys))


def bisect(
    call: Callable[[pa.Table], Any], table: pa.Table, errors: tuple[type[BaseException], ...]
) -> tuple[list[Any], Rejected]:
    """Calls ``call(table)``; when it raises one of ``errors``, splits the table in halves until
    the offending rows stand alone.

    Returns:
        The results of the calls that succeeded (in row order), and the rows that failed alone,
        each with ``'ErrorType: message'``.
    """
    try:
        return [call(table)], []
    except errors as exc:
        if table.num_rows <= 1:
            rows = table.to_pylist()
            return [], [(row, f'{type(exc).__name__}: {exc}'.strip()) for row in rows]
    half = table.num_rows // 2
    ok_a, bad_a = bisect(call, table.slice(0, half), errors)
    ok_b, bad_b = bisect(call, table.slice(half), errors)
    return ok_a + ok_b, bad_a + bad_b
