"""Where the sync's failed rows go: the warehouse's ``dead_letters`` table, or a JSON Lines file.

Every failure is the project's envelope (:func:`beam_pipelines.dead_letter.make_dead_letter`)
with stage ``sync``, the row as a JSON payload and the sync's origin as ``source``. The table
is keyed by :func:`~beam_pipelines.io.warehouse.dead_letter_id`, so a re-run that fails the same
rows the same way adds no copies; the file is appended to.
"""

from __future__ import annotations

import os
from typing import Any

import orjson

from beam_pipelines.dead_letter import make_dead_letter
from beam_pipelines.dead_letter import to_json_line
from beam_pipelines.io.postgres import PostgresTarget
from beam_pipelines.io.postgres import copy_and_merge
from beam_pipelines.io.warehouse import DEAD_LETTER_COLUMNS

# The warehouse's own envelope-to-row conversion, so both writers store envelopes alike.
from beam_pipelines.io.warehouse import dead_letter_rows

__all__ = ['STAGE', 'FileDeadLetters', 'TableDeadLetters', 'envelope']

STAGE = 'sync'


def envelope(
    row: dict[str, Any], why: str, error_type: str, source: dict[str, Any], name: str
) -> dict[str, Any]:
    """A failed row as a dead letter of the sync ``name``."""
    return make_dead_letter(
        stage=STAGE,
        error_type=error_type,
        error_message=why,
        payload=orjson.dumps(row, default=str),
        source=source,
        pipeline=f'sync:{name}',
    )


class TableDeadLetters:
    """Appends envelopes to ``schema.dead_letters`` through a connection it is given."""

    def __init__(self, conn, schema: str):
        self._conn = conn
        self._target = PostgresTarget(
            'dead_letters',
            DEAD_LETTER_COLUMNS,
            ('id',),
            schema,
            update=False,
            json_columns=('source',),
        )
        self.where = f'{schema}.dead_letters'

    def write(self, envelopes: list[dict[str, Any]]) -> None:
        if envelopes:
            with self._conn, self._conn.cursor() as cur:
                copy_and_merge(cur, self._target, dead_letter_rows(envelopes))

    def close(self) -> None:
        self._conn.close()


class FileDeadLetters:
    """Appends envelopes to a JSON Lines file (one per line), flushed to disk per write."""

    def __init__(self, path: str):
        self.where = path
        parent = os.path.dirname(os.path.abspath(path))
        os.makedirs(parent, exist_ok=True)

    def write(self, envelopes: list[dict[str, Any]]) -> None:
        if envelopes:
            with open(self.where, 'a', encoding='utf-8') as f:
                f.writelines(to_json_line(e) + '\n' for e in envelopes)
                f.flush()
                os.fsync(f.fileno())

    def close(self) -> None:
        pass  # each write opens and closes the file
