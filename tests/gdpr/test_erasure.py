"""End to end: a subject ingested into every store (PostgreSQL, Redis, Parquet, dead letters,
the run report, a Redis stream), exported, erased, searched for in every store, replayed."""

from __future__ import annotations

import io
import shutil
import uuid
import zipfile
from pathlib import Path

import orjson
import psycopg2
import pyarrow.parquet as pq
import pytest

from beam_pipelines import cli
from beam_pipelines import event_analytics
from beam_pipelines.gdpr import crypto
from beam_pipelines.gdpr import launcher as gdpr
from beam_pipelines.gdpr import secrets
from beam_pipelines.gdpr.keystore import KeyStore
from beam_pipelines.gdpr.matching import Matcher
from beam_pipelines.gdpr.protect import subject_of
from beam_pipelines.gdpr.pseudonym import all_pseudonyms
from tests.io.test_postgres import pg_schema  # noqa: F401  (fixture)
from tests.io.test_postgres import pg_url  # noqa: F401  (fixture)
from tests.io.test_redis import REDIS_URL
from tests.io.test_redis import client  # noqa: F401  (fixture)

pytestmark = pytest.mark.e2e
SUBJECT, EMAIL, PHONE = 'user-007', 'user-007@example.com', '+49 170 0007'
ENTITIES = 12


def _write_input(path: Path) -> int:
    lines = []
    for i in range(360):
        u = f'user-{i % ENTITIES:03d}'
        record = {
            'event_id': f'e{i}',
            'event_type': ('click', 'page_view')[(i // ENTITIES) % 2],
            'entity_id': u,
            'timestamp': 1714521600 + 10 * i,
            'value': i % 7,
            'email': f'{u}@example.com',
            'phone': f'+49 170 {i % ENTITIES:04d}',
            'plan': 'pro',
        }
        lines.append(orjson.dumps(record))
    # The subject's bad records: a truncated line and an invalid timestamp (dead letters keep
    # the raw record, in plain text), and an event of another entity naming the subject's email.
    lines.append(b'{"event_id": "bad1", "entity_id": "user-007", "email": "user-007@exa')
    lines.append(
        orjson.dumps(
            {
                'event_id': 'bad2',
                'event_type': 'click',
                'entity_id': SUBJECT,
                'timestamp': 'never',
                'email': EMAIL,
            }
        )
    )
    lines.append(
        orjson.dumps(
            {
                'event_id': 'ref1',
                'event_type': 'invite',
                'entity_id': 'user-999',
                'timestamp': 1714521600,
                'referrer_email': EMAIL,
                'email': 'x@y.z',
            }
        )
    )
    path.write_bytes(b'\n'.join(lines) + b'\n')
    return len(lines)


def _traces(url, schema, redis_client, prefix, roots, matcher) -> dict[str, list]:
    """Every place in every store where the matcher finds something."""
    found = {'postgres': [], 'redis': [], 'files': []}
    with psycopg2.connect(url) as conn, conn.cursor() as cur:
        cur.execute(
            'SELECT table_name FROM information_schema.tables WHERE table_schema = %s '
            "AND table_type = 'BASE TABLE'",
            (schema,),
        )
        for (table,) in cur.fetchall():
            cur.execute(
                f'SELECT count(*) FROM "{schema}"."{table}" t WHERE t::text ~ %s',
                (matcher.pattern,),
            )
            if cur.fetchone()[0]:
                found['postgres'].append(table)
    conn.close()
    for key in redis_client.scan_iter(match=f'{prefix}*'):
        text = key.decode()
        kind = redis_client.type(key).decode()
        if kind == 'hash':
            text += str(redis_client.hgetall(key))
        elif kind == 'zset':
            text += str(redis_client.zrange(key, 0, -1))
        elif kind == 'stream':
            text += str(redis_client.xrange(key))
        if matcher.search(text.replace("b'", ' ').replace("'", ' ')):
            found['redis'].append(text[:80])
    for root in roots:
        for path in Path(root).rglob('*'):
            if not path.is_file():
                continue
            data = path.read_bytes()
            text = (
                orjson.dumps(pq.read_table(io.BytesIO(data)).to_pylist(), default=str).decode()
                if path.suffix == '.parquet'
                else data.decode('utf-8', errors='replace')
            )
            if matcher.search(text):
                found['files'].append(str(path))
    return found


def _any_trace(found):
    return {k: v for k, v in found.items() if v}


def _stores(url, schema, prefix, out, secrets_file) -> list[str]:
    """The store flags the flagship and the gdpr commands share."""
    return [
        *('--postgres_url', url, '--pg_schema', schema, '--redis_url', REDIS_URL),
        *('--redis_prefix', prefix, '--output_dir', str(out)),
        *('--gdpr_secrets_file', str(secrets_file)),
    ]


def test_a_subject_is_exported_then_erased_everywhere_and_stays_erased(
    tmp_path,
    pg_url,  # noqa: F811
    pg_schema,  # noqa: F811
    client,  # noqa: F811
):
    prefix = f'gdpr:{uuid.uuid4().hex[:8]}:'
    stream = f'{prefix}ingest'
    secrets_file = tmp_path / 'secrets.json'
    secrets_file.write_text(secrets.generate().to_json())
    keys = secrets.load(str(secrets_file))
    ring = keys.pseudonym_keys
    client.xadd(stream, {'data': orjson.dumps({'entity_id': SUBJECT, 'email': EMAIL})})
    client.xadd(stream, {'data': orjson.dumps({'entity_id': 'user-001'})})
    source = tmp_path / 'events.jsonl'
    read = _write_input(source)
    out = tmp_path / 'out'
    stores = _stores(pg_url, pg_schema, prefix, out, secrets_file)
    flags = ['--input', str(source), *stores[:-2], '--features']  # no secrets: no protection
    protect = [
        *('--pii_fields', 'entity_id,email,referrer_email', '--encrypt_fields', 'phone'),
        *stores[-2:],
    ]
    try:
        assert event_analytics.run([*flags, *protect]) == 0
        summary = orjson.loads((out / 'run_summary.json').read_bytes())
        assert summary['counts']['read'] == read and summary['balanced']
        everything = Matcher(
            [SUBJECT, EMAIL, PHONE, *all_pseudonyms(SUBJECT, ring), *all_pseudonyms(EMAIL, ring)]
        )
        plain_only = Matcher([SUBJECT, EMAIL, PHONE])
        roots = [str(out)]
        before = _traces(pg_url, pg_schema, client, prefix, roots, everything)
        # Ingested everywhere: pseudonymised in the clean stores, plain only in dead letters.
        assert {'events', 'aggregates', 'dead_letters', 'gdpr_keys'} <= set(before['postgres'])
        assert before['redis'] and len(before['files']) >= 4
        plain = _traces(pg_url, pg_schema, client, prefix, roots, plain_only)
        assert plain['postgres'] == ['dead_letters']
        assert all('dead_letter' in f or f.endswith('report.html') for f in plain['files'])
        backup = tmp_path / 'backup'  # an archive copy taken before the erasure
        shutil.copytree(out / 'events', backup)

        stores = [*stores, '--requested_by', 'dpo@example.com']
        subject = ['--subject', SUBJECT, '--identifier', EMAIL, '--pii_fields', 'email']
        bundle = tmp_path / 'bundle.zip'
        assert gdpr.run(['access', *stores, *subject, '--output', str(bundle)]) == 0
        with zipfile.ZipFile(bundle) as z:
            exported = orjson.loads(z.read('subject.json'))
            assert 'csv/postgres_events.csv' in z.namelist()
        events = exported['postgres']['events']
        assert len(events) == 360 // ENTITIES + 1  # its own, and the referral naming it
        own = [e for e in events if e['event_id'] != 'ref1']
        assert {e['attributes']['phone'] for e in own} == {PHONE}  # decrypted for the subject
        assert len(exported['postgres']['dead_letters']) == 2
        assert (
            f'"entity_id":"{SUBJECT}"' in exported['redis']['streams'][stream][0]['fields']['data']
        )
        assert any('features:' in k for k in exported['redis']['keys']), exported['redis'][
            'keys'
        ].keys()

        # Streams outside the prefix: searched when named (the ingestion stream), never when
        # not (another application's, sharing the server).
        named, unnamed = f'ext:{prefix}ingest', f'other-app:{prefix}events'
        for key in (named, unnamed):
            client.xadd(key, {'data': orjson.dumps({'entity_id': SUBJECT})})
        erase = ['erase', *stores, *subject, '--redis_stream', named]
        assert gdpr.run(erase) == 0
        after = _traces(pg_url, pg_schema, client, prefix, roots, everything)
        assert _any_trace(after) == {}, after
        assert client.xlen(stream) == 1  # the other entity's entry stays
        assert client.xlen(named) == 0 and client.xlen(unnamed) == 1
        with psycopg2.connect(pg_url) as conn, conn.cursor() as cur:
            cur.execute(
                f'SELECT action, requested_by, status, counts::text, stores::text '
                f'FROM "{pg_schema}".gdpr_audit ORDER BY started_at'
            )
            audit = cur.fetchall()
            cur.execute(f'SELECT count(*) FROM "{pg_schema}".events')
            kept_events = cur.fetchone()[0]
        conn.close()
        assert [(a[0], a[1], a[2]) for a in audit] == [
            ('access', 'dpo@example.com', 'succeeded'),
            ('erase', 'dpo@example.com', 'succeeded'),
        ]
        assert not everything.search(str(audit))  # the audit holds no personal data
        counts = orjson.loads(audit[1][3])
        assert counts['postgres']['events'] == 31 and counts['postgres']['dead_letters'] == 2
        assert counts['postgres']['data_keys'] == 1 and counts['redis']['stream_entries'] == 2
        assert kept_events == 360 - 30 + 1 - 1

        # Crypto-shredding: the archived copy still holds the subject's ciphertexts, which no
        # longer decrypt with any key the store has; the others' still do.
        conn = psycopg2.connect(pg_url)
        store = KeyStore(conn, pg_schema, keys.master_keys)
        rows = pq.read_table(backup).to_pylist()
        subject_key = subject_of(SUBJECT, ring)
        mine = [r for r in rows if r['entity_id'] == subject_key]
        assert mine and store.keys_for([subject_key], create=False) == {}
        other = next(r for r in rows if r['entity_id'] != subject_key)
        other_key = store.keys_for([other['entity_id']], create=False)[other['entity_id']]
        token = orjson.loads(other['attributes'])['phone']
        assert crypto.decrypt_value(token, other_key, other['entity_id'], 'phone').startswith(
            '"+49'
        )
        conn.close()

        # A replay of the original input brings nothing back, and accounts for every record.
        assert event_analytics.run([*flags, *protect]) == 0
        summary = orjson.loads((out / 'run_summary.json').read_bytes())
        assert summary['balanced'] and summary['counts']['erased'] == 30 + 2 + 1
        again = _traces(pg_url, pg_schema, client, prefix, roots, everything)
        assert _any_trace(again) == {}, again
        # A run without the secrets would not know whom to drop: it is refused.
        with pytest.raises(cli.UsageError, match='tombstones of erased'):
            event_analytics.run(flags)
    finally:
        for key in client.scan_iter(match=f'*{prefix}*'):
            client.delete(key)


def test_the_shared_pattern_means_the_same_in_postgresql(pg_url):  # noqa: F811
    m = Matcher(['u1', 'a.b@x.org', 'p1_' + 'ab' * 32])
    texts = ['u1', 'u10', '{"e":"u1"}', 'a.b@x.org', 'aXb@x.org', 'q p1_' + 'ab' * 32, '']
    with psycopg2.connect(pg_url) as conn, conn.cursor() as cur:
        cur.execute('SELECT t ~ %s FROM unnest(%s::text[]) t', (m.pattern, texts))
        in_pg = [row[0] for row in cur.fetchall()]
    conn.close()
    assert in_pg == [m.search(t) for t in texts]


def test_enforce_removes_what_reached_the_stores_after_an_erasure(
    tmp_path,
    pg_url,  # noqa: F811
    pg_schema,  # noqa: F811
    client,  # noqa: F811
):
    """Records in flight when the tombstones were written land after the deletion; ``gdpr
    enforce`` finds them by the tombstones alone, with no identifier given."""
    prefix = f'gdpr:{uuid.uuid4().hex[:8]}:'
    secrets_file = tmp_path / 'secrets.json'
    secrets_file.write_text(secrets.generate().to_json())
    ring = secrets.load(str(secrets_file)).pseudonym_keys
    source = tmp_path / 'events.jsonl'
    _write_input(source)
    out = tmp_path / 'out'
    stores = _stores(pg_url, pg_schema, prefix, out, secrets_file)
    run = ['--input', str(source), '--pii_fields', 'entity_id,email', *stores]
    try:
        assert event_analytics.run(run) == 0
        early = tmp_path / 'early'  # what a pipeline still running had in hand
        shutil.copytree(out / 'events', early)
        assert gdpr.run(['erase', *stores, '--subject', SUBJECT, '--identifier', EMAIL]) == 0
        shutil.copy(next(early.glob('*.parquet')), out / 'events' / 'late-part.parquet')
        pseudonym = all_pseudonyms(SUBJECT, ring)[0]
        client.hset(f'{prefix}latest:{pseudonym}:click', mapping={'count': 1})
        client.xadd(f'{prefix}ingest', {'data': orjson.dumps({'entity_id': SUBJECT})})
        with psycopg2.connect(pg_url) as conn, conn.cursor() as cur:
            cur.execute(
                f'INSERT INTO "{pg_schema}".events (event_id, event_type, entity_id, event_time) '
                "VALUES ('late-1', 'click', %s, '2024-05-01T00:30:00Z')",
                (pseudonym,),
            )
        conn.close()
        everything = Matcher([SUBJECT, EMAIL, *all_pseudonyms(SUBJECT, ring),
                              *all_pseudonyms(EMAIL, ring)])  # fmt: skip
        late = _traces(pg_url, pg_schema, client, prefix, [str(out)], everything)
        assert 'events' in late['postgres'] and late['redis'] and late['files']
        assert gdpr.run(['enforce', *stores]) == 0
        after = _traces(pg_url, pg_schema, client, prefix, [str(out)], everything)
        assert _any_trace(after) == {}, after
        other = pq.read_table(out / 'events' / 'late-part.parquet').num_rows
        assert other > 0  # the other subjects' rows of that file stay
    finally:
        for key in client.scan_iter(match=f'{prefix}*'):
            client.delete(key)
