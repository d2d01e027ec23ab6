"""Change data capture, against a throwaway PostgreSQL server with ``wal_level = logical``.

The machine's server runs with ``wal_level = replica``, so the test initialises its own cluster
(initdb and pg_ctl, as the ``postgres`` user, on a free port) and removes it afterwards. Without
the PostgreSQL server binaries the test skips, except under CI, where it fails.
"""

from __future__ import annotations

import glob
import json
import os
import shutil
import subprocess
import tempfile

import apache_beam as beam
import psycopg2
import pytest
from apache_beam.metrics.metric import MetricsFilter

from beam_pipelines.io.postgres_cdc import AcknowledgeChanges
from beam_pipelines.io.postgres_cdc import ReadChangesFromPostgres
from beam_pipelines.io.postgres_cdc import current_lsn
from beam_pipelines.io.postgres_cdc import parse_test_decoding
from tests.conftest import free_port


def test_parse_test_decoding_lines():
    assert parse_test_decoding('BEGIN 512') is None
    change = parse_test_decoding(
        "table public.t: INSERT: id[bigint]:7 note[text]:'it''s' at[timestamp with time zone]:"
        "'2024-05-01 00:00:00+00' ok[boolean]:true v[double precision]:1.5 gone[text]:null"
    )
    assert change == {
        'schema': 'public',
        'table': 't',
        'op': 'insert',
        'row': {
            'id': 7,
            'note': "it's",
            'at': '2024-05-01 00:00:00+00',
            'ok': True,
            'v': 1.5,
            'gone': None,
        },
    }
    assert parse_test_decoding('table public.t: DELETE: id[bigint]:7')['op'] == 'delete'


def _binaries():
    found = sorted(glob.glob('/usr/lib/postgresql/*/bin/initdb'))
    return os.path.dirname(found[-1]) if found else None


@pytest.fixture(scope='module')
def logical_url():
    bindir = _binaries()
    if bindir is None or shutil.which('runuser') is None or os.geteuid() != 0:
        if os.environ.get('CI'):
            pytest.fail('CDC tests need the PostgreSQL server binaries and root (for runuser)')
        pytest.skip('no PostgreSQL server binaries, or not root')
    port = free_port()
    root = tempfile.mkdtemp(prefix='bp_pgcdc_')
    shutil.chown(root, 'postgres')
    data = os.path.join(root, 'data')

    def as_postgres(*args):
        subprocess.run(
            ['runuser', '-u', 'postgres', '--', *args],
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            timeout=120,
        )

    as_postgres(f'{bindir}/initdb', '-D', data, '--auth=trust', '-U', 'postgres', '-E', 'UTF8')
    options = (
        f'-c wal_level=logical -c port={port} -c listen_addresses=127.0.0.1 '
        f'-c unix_socket_directories={root} -c max_replication_slots=4 -c fsync=off'
    )
    as_postgres(f'{bindir}/pg_ctl', '-D', data, '-o', options, '-l', f'{root}/log', '-w', 'start')
    try:
        yield f'postgresql://postgres@127.0.0.1:{port}/postgres'
    finally:
        as_postgres(f'{bindir}/pg_ctl', '-D', data, '-m', 'immediate', 'stop')
        shutil.rmtree(root, ignore_errors=True)


def _sql(url, *statements):
    with psycopg2.connect(url) as conn, conn.cursor() as cur:
        for statement in statements:
            cur.execute(statement)
    conn.close()


def _run(url, fail=False):
    """Reads changes up to now, 'writes' them, acknowledges. Returns the changes read."""
    upper = current_lsn(url)
    out = tempfile.mkdtemp()
    p = beam.Pipeline()
    changes = p | ReadChangesFromPostgres(url, 'bp_test', upper_lsn=upper)
    rows = changes | beam.FlatMap(lambda t: t.to_pylist())
    if fail:
        written = rows | beam.Map(lambda _: 1 / 0)
    else:
        written = rows | beam.Map(json.dumps) | beam.io.WriteToText(os.path.join(out, 'changes'))
    _ = (written,) | AcknowledgeChanges(url, 'bp_test', upper)
    result = p.run()
    result.wait_until_finish()
    counters = result.metrics().query(MetricsFilter().with_name('postgres_changes_read'))
    lines = []
    for name in glob.glob(os.path.join(out, 'changes*')):
        with open(name) as f:
            lines.extend(json.loads(line) for line in f)
    shutil.rmtree(out)
    assert len(lines) == sum(c.committed for c in counters['counters'])
    return sorted(lines, key=lambda c: c['lsn'])


def test_changes_up_to_now_are_read_once_and_acknowledged_after_writing(logical_url):
    _sql(logical_url, 'CREATE TABLE t (id bigint PRIMARY KEY, note text)')
    _run(logical_url)  # creates the slot; nothing to read yet
    _sql(
        logical_url,
        "INSERT INTO t VALUES (1, 'a'), (2, 'b'), (3, 'c')",
        "UPDATE t SET note = 'B' WHERE id = 2",
        'DELETE FROM t WHERE id = 3',
    )
    changes = _run(logical_url)
    assert [(c['op'], json.loads(c['row'])) for c in changes] == [
        ('insert', {'id': 1, 'note': 'a'}),
        ('insert', {'id': 2, 'note': 'b'}),
        ('insert', {'id': 3, 'note': 'c'}),
        ('update', {'id': 2, 'note': 'B'}),
        ('delete', {'id': 3}),
    ]
    assert _run(logical_url) == []  # acknowledged: not read again
    _sql(logical_url, "INSERT INTO t VALUES (4, 'd')")
    with pytest.raises(Exception, match='division by zero'):
        _run(logical_url, fail=True)
    again = _run(logical_url)  # the failed run acknowledged nothing
    assert [(c['op'], json.loads(c['row'])) for c in again] == [('insert', {'id': 4, 'note': 'd'})]
