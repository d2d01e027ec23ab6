"""Transforms the sync tests name with ``--transform tests.sync.transforms:NAME``."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc

from beam_pipelines.sync.mapping import REJECT_COLUMN


def reject_logins(table: pa.Table) -> pa.Table:
    """Rejects (vectorised) the aggregates of login events."""
    bad = pc.equal(table.column('event_type'), 'login')
    why = pc.if_else(bad, pa.scalar('logins are not synced'), pa.scalar(None, pa.string()))
    return table.append_column(REJECT_COLUMN, why)
