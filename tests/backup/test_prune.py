"""Pruning a local archive: the newest backups stay with every ancestor their chains need."""

from __future__ import annotations

import pytest
from psycopg2 import sql

from beam_pipelines.backup import list_manifests
from beam_pipelines.backup import restore
from beam_pipelines.backup import run_backup
from tests.backup.conftest import backup
from tests.backup.conftest import execute
from tests.backup.conftest import seed_small

pytestmark = pytest.mark.e2e


def test_prune_keeps_n_and_their_chains(tmp_path, pg_url, pg_schema, restore_schema, capsys):
    arch = str(tmp_path / 'archive')
    seed_small(pg_url, pg_schema)
    ids = []
    for i, mode in enumerate(['full', 'incremental', 'incremental', 'full', 'incremental']):
        seed_small(pg_url, pg_schema, tag=f't{i}', rows=2)
        ids.append(run_backup(pg_url, pg_schema, arch, mode).backup_id)
    f1, i1, i2, f2, i3 = ids
    flags = ['--archive', arch, '--postgres_url', pg_url, '--pg_schema', pg_schema]

    # The third newest (i2) needs i1 and f1: nothing can go.
    assert backup('prune', '--keep', '3', *flags) == 0
    assert [m.backup_id for m in list_manifests(arch)] == ids
    assert backup('prune', '--keep', '1', '--dry_run', *flags) == 0
    assert 'would delete 3 backups' in capsys.readouterr().out
    assert [m.backup_id for m in list_manifests(arch)] == ids

    assert backup('prune', '--keep', '1', *flags) == 0
    assert 'kept 2, deleted 3 backups, marked 3 job rows pruned' in capsys.readouterr().out
    assert [m.backup_id for m in list_manifests(arch)] == [f2, i3]
    assert sorted(p.name for p in (tmp_path / 'archive').iterdir()) == [f2, i3]
    status = sql.SQL('SELECT backup_id, status FROM {}.backup_jobs ORDER BY 1')
    assert execute(pg_url, status.format(sql.Identifier(pg_schema))) == [
        (f1, 'pruned'),
        (i1, 'pruned'),
        (i2, 'pruned'),
        (f2, 'succeeded'),
        (i3, 'succeeded'),
    ]
    assert backup('list', '--archive', arch) == 0
    listing = capsys.readouterr().out
    assert f2 in listing and i3 in listing and f1 not in listing
    # What is left still restores; a pruned backup is refused.
    assert restore(i3, arch, pg_url, restore_schema)['chain'] == [f2, i3]
    gone = ['restore', '--id', i2, '--archive', arch, '--postgres_url', pg_url]
    assert backup(*gone, '--pg_schema', restore_schema) == 1
    assert f"backup '{i2}' is not in the archive" in capsys.readouterr().err
