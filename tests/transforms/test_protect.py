"""``ProtectEvents`` and ``ForgetErased`` in a pipeline, with the key store and tombstones in the
real PostgreSQL; the DoFns carry no key material; long-running workers see new tombstones."""

from __future__ import annotations

import pickle

import apache_beam as beam
import orjson
import psycopg2
import pyarrow as pa
import pytest
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that
from apache_beam.testing.util import equal_to

from beam_pipelines.gdpr import secrets
from beam_pipelines.gdpr.config import GdprConfig
from beam_pipelines.gdpr.policy import PiiPolicy
from beam_pipelines.gdpr.pseudonym import pseudonymise
from beam_pipelines.gdpr.tombstones import add_tombstones
from beam_pipelines.io.warehouse_schema import migrate
from beam_pipelines.transforms.protect import ForgetErased
from beam_pipelines.transforms.protect import ProtectEvents
from beam_pipelines.transforms.protect import _ProtectFn
from tests.io.test_postgres import pg_schema  # noqa: F401  (fixture)
from tests.io.test_postgres import pg_url  # noqa: F401  (fixture)

POLICY = PiiPolicy(
    pseudonymise=('entity_id', 'email'), encrypt=('phone',), columns=frozenset({'entity_id'})
)


@pytest.fixture
def store(tmp_path, pg_url, pg_schema):  # noqa: F811
    path = tmp_path / 'secrets.json'
    keys = secrets.generate()
    path.write_text(keys.to_json())
    conn = psycopg2.connect(pg_url)
    migrate(conn, pg_schema)
    yield keys, GdprConfig(POLICY, str(path), pg_url, pg_schema, refresh_secs=0.0), conn
    conn.close()


def _table(rows):
    return pa.table(
        {
            'event_id': [r[0] for r in rows],
            'entity_id': [r[1] for r in rows],
            'attributes': [orjson.dumps(r[2]).decode() for r in rows],
        }
    )


def test_events_are_protected_and_erased_subjects_dropped(store):
    keys, config, conn = store
    ring = keys.pseudonym_keys
    with conn, conn.cursor() as cur:
        add_tombstones(cur, config.store_schema, ['u2'], ring, 'req-1')
    tables = [
        _table([('e1', 'u1', {'email': 'a@x', 'phone': '1'}), ('e2', 'u2', {'email': 'b@x'})]),
        _table([('e3', 'u3', {'email': 'c@x', 'phone': '3'})]),
    ]
    envelopes = [
        {'payload': '{"entity_id": "u2", "timestamp": "never"}', 'stage': 'validate'},
        {'payload': '{"entity_id": "u1", "timestamp": ', 'stage': 'parse'},
    ]
    with TestPipeline() as p:
        protected = p | 'Tables' >> beam.Create(tables) | 'Protect' >> ProtectEvents(config)
        forgotten = p | 'Envelopes' >> beam.Create(envelopes) | 'Forget' >> ForgetErased(config)
        ids = protected.kept | 'Ids' >> beam.FlatMap(lambda t: t.column('event_id').to_pylist())
        entities = protected.kept | 'Entities' >> beam.FlatMap(
            lambda t: t.column('entity_id').to_pylist()
        )
        assert_that(ids, equal_to(['e1', 'e3']), label='KeptEvents')
        assert_that(
            entities,
            equal_to([pseudonymise('u1', ring), pseudonymise('u3', ring)]),
            label='Pseudonymised',
        )
        assert_that(protected.erased, equal_to([1]), label='ErasedEvents')
        assert_that(
            forgotten.kept | 'Stages' >> beam.Map(lambda e: e['stage']),
            equal_to(['parse']),
            label='KeptDeadLetters',
        )
        assert_that(forgotten.erased, equal_to([1]), label='ErasedDeadLetters')
    with conn.cursor() as cur:  # one data key per subject with encrypted values
        cur.execute(f'SELECT subject FROM "{config.store_schema}".gdpr_keys ORDER BY 1')
        subjects = [r[0] for r in cur.fetchall()]
    assert sorted(subjects) == sorted([pseudonymise('u1', ring), pseudonymise('u3', ring)])


def test_the_dofn_carries_no_key_material(store):
    keys, config, _ = store
    blob = pickle.dumps(_ProtectFn(config))
    for ring in (keys.pseudonym_keys, keys.master_keys):
        for key in ring.keys.values():
            assert key not in blob and key.hex().encode() not in blob


def test_a_running_worker_honours_an_erasure_made_meanwhile(store):
    keys, config, conn = store
    fn = _ProtectFn(config)
    fn.setup()
    try:
        table = _table([('e1', 'u1', {'email': 'a@x'})])
        assert [t.num_rows for t in fn.process(table)] == [1]
        with conn, conn.cursor() as cur:
            add_tombstones(cur, config.store_schema, ['a@x'], keys.pseudonym_keys, 'req-2')
        out = list(fn.process(table))
        assert [o.value for o in out] == [1]  # only the erased count, tagged
    finally:
        fn.teardown()
