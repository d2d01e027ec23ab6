"""Manifests, chains and prune plans: plain Python, no database."""

from __future__ import annotations

import datetime as dt

import pytest

from beam_pipelines.backup.manifest import FULL
from beam_pipelines.backup.manifest import INCREMENTAL
from beam_pipelines.backup.manifest import BackupError
from beam_pipelines.backup.manifest import FileEntry
from beam_pipelines.backup.manifest import Manifest
from beam_pipelines.backup.manifest import chain
from beam_pipelines.backup.manifest import new_backup_id
from beam_pipelines.backup.manifest import plan_prune


def manifest(backup_id: str, parent: str | None = None, schema: str = 's') -> Manifest:
    return Manifest(
        backup_id=backup_id,
        mode=INCREMENTAL if parent else FULL,
        parent_id=parent,
        schema=schema,
        database='db',
        migration_version=5,
        created_at='2026-01-01T00:00:00+00:00',
        watermark_from=None,
        watermark_to='2026-01-01T00:00:00+00:00',
        outputs=(),
        files=(FileEntry(f'{backup_id}/tables/t.csv.gz', 'table', 't', 3, 10, 'ab', ('a',)),),
    )


def test_backup_ids_sort_by_time():
    t = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    ids = [new_backup_id(t + dt.timedelta(microseconds=i)) for i in (0, 1, 10, 1_000_000)]
    assert ids == sorted(ids) and len(set(ids)) == 4


def test_manifest_round_trips():
    m = manifest('b2', 'b1')
    assert Manifest.from_json(m.to_json()) == m
    assert (m.rows, m.bytes) == (3, 10)


def test_chain_follows_parents_to_the_full_backup():
    found = {m.backup_id: m for m in [manifest('a'), manifest('b', 'a'), manifest('c', 'b')]}
    assert [m.backup_id for m in chain(found.get, 'c')] == ['a', 'b', 'c']
    del found['a']
    with pytest.raises(BackupError, match="'a' is not in the archive \\(needed by b\\)"):
        chain(found.get, 'c')


def test_prune_keeps_the_newest_and_their_ancestors():
    ms = [
        manifest('1'),
        manifest('2', '1'),
        manifest('3', '2'),
        manifest('4'),
        manifest('5', '4'),
        manifest('6', schema='other'),
        manifest('7', schema='other'),
    ]
    assert plan_prune(ms, 1) == (['4', '5', '7'], ['1', '2', '3', '6'])
    # The third newest is an incremental: its whole chain stays.
    assert plan_prune(ms, 3) == (['1', '2', '3', '4', '5', '6', '7'], [])
    with pytest.raises(ValueError, match='keep'):
        plan_prune(ms, 0)
