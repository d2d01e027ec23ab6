"""The GDPR building blocks without a pipeline: secrets, pseudonyms, field encryption, matching,
the policy and the protection of an event table."""

from __future__ import annotations

import json

import orjson
import pyarrow as pa
import pytest
from hypothesis import given
from hypothesis import strategies as st

from beam_pipelines.gdpr import crypto
from beam_pipelines.gdpr import secrets
from beam_pipelines.gdpr.matching import Matcher
from beam_pipelines.gdpr.matching import envelope_tombstoned
from beam_pipelines.gdpr.matching import payload_values
from beam_pipelines.gdpr.policy import PolicyError
from beam_pipelines.gdpr.policy import policy_from
from beam_pipelines.gdpr.protect import protect_table
from beam_pipelines.gdpr.protect import subject_of
from beam_pipelines.gdpr.pseudonym import all_pseudonyms
from beam_pipelines.gdpr.pseudonym import is_pseudonym
from beam_pipelines.gdpr.pseudonym import pseudonymise
from beam_pipelines.gdpr.pseudonym import pseudonymise_array
from beam_pipelines.gdpr.tombstones import Tombstones
from beam_pipelines.gdpr.tombstones import tombstone_of
from beam_pipelines.schema import Event
from beam_pipelines.schema import compile_schema

SECRETS = secrets.generate()
RING = SECRETS.pseudonym_keys


def test_secrets_round_trip_through_file_and_environment(tmp_path):
    path = tmp_path / 'secrets.json'
    path.write_text(SECRETS.to_json())
    assert secrets.load(str(path)) == SECRETS
    assert secrets.load(env={secrets.ENV_VAR: SECRETS.to_json()}) == SECRETS


def test_secrets_never_show_key_material():
    shown = repr(SECRETS) + str(SECRETS)
    for ring in (SECRETS.pseudonym_keys, SECRETS.master_keys):
        for key in ring.keys.values():
            assert key.hex() not in shown and key not in shown.encode()
    assert 'p1' in shown


@pytest.mark.parametrize(
    ('text', 'message'),
    [
        ('nope', 'not JSON'),
        ('[]', 'expected a JSON object'),
        ('{"pseudonym_keys": {}}', 'pseudonym_keys'),
        (
            json.dumps({'pseudonym_keys': {'active': 'p1', 'keys': {'p1': 'c2hvcnQ='}}}),
            'shorter than 32 bytes',
        ),
    ],
)
def test_bad_secrets_are_refused_clearly(tmp_path, text, message):
    path = tmp_path / 's.json'
    path.write_text(text)
    with pytest.raises(secrets.SecretsError, match=message):
        secrets.load(str(path))


def test_missing_secrets_name_both_sources():
    with pytest.raises(secrets.SecretsError, match='--gdpr_secrets_file or set'):
        secrets.load(env={})


def test_rotation_keeps_old_keys_and_moves_the_active_one():
    rotated = secrets.rotate(SECRETS, 'pseudonym')
    assert rotated.pseudonym_keys.active == 'p2'
    assert set(rotated.pseudonym_keys.keys) == {'p1', 'p2'}
    assert rotated.master_keys == SECRETS.master_keys
    old = pseudonymise('user-1', RING)
    assert old in all_pseudonyms('user-1', rotated.pseudonym_keys)
    assert pseudonymise('user-1', rotated.pseudonym_keys) != old
    with pytest.raises(secrets.SecretsError):
        secrets.rotate(SECRETS, 'other')


def test_pseudonyms_are_keyed_stable_and_tagged():
    p = pseudonymise('a@example.com', RING)
    assert p == pseudonymise('a@example.com', RING) and is_pseudonym(p)
    assert p.startswith('p1_')
    assert p != pseudonymise('a@example.com', secrets.generate().pseudonym_keys)
    column = pa.array(['x', None, 'y', 'x', p])
    out = pseudonymise_array(column, RING).to_pylist()
    assert out[0] == out[3] == pseudonymise('x', RING)
    assert out[1] is None
    assert out[4] == p  # a pseudonym is not pseudonymised again


@given(st.text(), st.text(min_size=1), st.text(min_size=1))
def test_encryption_round_trips_and_binds_subject_and_field(value, subject, field):
    key = crypto.new_data_key()
    token = crypto.encrypt_value(value, key, subject, field)
    assert crypto.is_ciphertext(token)
    assert crypto.decrypt_value(token, key, subject, field) == value
    with pytest.raises(crypto.CryptoError):
        crypto.decrypt_value(token, key, subject + 'x', field)
    with pytest.raises(crypto.CryptoError):
        crypto.decrypt_value(token, crypto.new_data_key(), subject, field)


def test_wrapped_keys_need_their_master_key():
    key = crypto.new_data_key()
    wrapped = crypto.wrap_key(key, SECRETS.master_keys.active_key, 's1')
    assert crypto.unwrap_key(wrapped, SECRETS.master_keys.active_key, 's1') == key
    with pytest.raises(crypto.CryptoError):
        crypto.unwrap_key(wrapped, SECRETS.master_keys.active_key, 's2')


def test_matcher_finds_delimited_values_only():
    m = Matcher(['u1', 'a.b@example.com'])
    assert m.search('{"entity_id": "u1"}') and m.search('u1') and m.search('x,u1')
    assert not m.search('u10') and not m.search('xu1') and not m.search(None)
    assert m.search('mail a.b@example.com now') and not m.search('aXb@example.com')


def test_payload_values_reach_into_json_and_broken_text():
    ok = {'payload': '{"entity_id": "u1", "n": {"email": "a@b.c"}, "v": 3}'}
    assert {'u1', 'a@b.c', '3'} <= set(payload_values(ok))
    broken = {'payload': '{"entity_id": "u1", "email": "a@b.c", "ts": '}
    assert {'u1', 'a@b.c'} <= set(payload_values(broken))
    import base64

    raw = {'payload': base64.b64encode(b'u1,\xff,x').decode(), 'payload_encoding': 'base64'}
    assert 'u1' in payload_values(raw)
    tombs = Tombstones(frozenset([tombstone_of('u1', RING, 'p1')]))
    assert envelope_tombstoned(broken, tombs, RING)
    assert not envelope_tombstoned({'payload': '{"entity_id": "u10"}'}, tombs, RING)


def test_policy_checks_declarations():
    schema = compile_schema(Event)
    policy = policy_from(schema, ['entity_id', 'email'], ['phone'])
    assert policy.pseudonymise == ('entity_id', 'email') and policy.encrypt == ('phone',)
    assert policy.columns == frozenset({'entity_id'})
    assert policy.attribute_fields == ('email', 'phone')
    with pytest.raises(PolicyError, match='both'):
        policy_from(schema, ['email'], ['email'])
    with pytest.raises(PolicyError, match='subject'):
        policy_from(schema, [], ['entity_id'])
    with pytest.raises(PolicyError, match='only strings'):
        policy_from(schema, ['value'], [])


def _events(rows):
    return pa.table(
        {
            'event_id': [r[0] for r in rows],
            'entity_id': [r[1] for r in rows],
            'value': [1.0] * len(rows),
            'attributes': [orjson.dumps(r[2]).decode() if r[2] else None for r in rows],
        }
    )


class _Keys:
    def __init__(self):
        self.keys = {}

    def __call__(self, subjects):
        for s in subjects:
            self.keys.setdefault(s, crypto.new_data_key())
        return {s: self.keys[s] for s in subjects}


def test_protect_pseudonymises_encrypts_and_drops_erased():
    schema = compile_schema(Event)
    policy = policy_from(schema, ['entity_id', 'email'], ['phone'])
    table = _events(
        [
            ('e1', 'u1', {'email': 'u1@x.org', 'phone': '+49 1', 'plan': 'pro'}),
            ('e2', 'u2', {'email': 'u2@x.org', 'phone': 12345}),
            ('e3', 'u3', None),
            ('e4', 'u4', {'email': 'gone@x.org'}),  # an erased subject's address, another id
        ]
    )
    tombs = Tombstones(
        frozenset([tombstone_of('u3', RING, 'p1'), tombstone_of('gone@x.org', RING, 'p1')])
    )
    keys = _Keys()
    out, erased = protect_table(table, policy, RING, tombs, keys)
    assert erased == 2 and out.column('event_id').to_pylist() == ['e1', 'e2']
    assert out.column('entity_id').to_pylist() == [
        pseudonymise('u1', RING),
        pseudonymise('u2', RING),
    ]
    docs = [orjson.loads(a) for a in out.column('attributes').to_pylist()]
    assert docs[0]['email'] == pseudonymise('u1@x.org', RING) and docs[0]['plan'] == 'pro'
    s1, s2 = subject_of('u1', RING), subject_of('u2', RING)
    assert orjson.loads(crypto.decrypt_value(docs[0]['phone'], keys.keys[s1], s1, 'phone')) == (
        '+49 1'
    )
    # JSON types survive encryption; the plain values appear nowhere.
    assert orjson.loads(crypto.decrypt_value(docs[1]['phone'], keys.keys[s2], s2, 'phone')) == (
        12345
    )
    text = str(out.to_pylist())
    for plain in ('u1@x.org', '+49 1', '12345', "'u1'"):
        assert plain not in text
    again, none = protect_table(out, policy, RING, tombs, keys)  # a replay of protected rows
    assert none == 0 and again.column('entity_id').equals(out.column('entity_id'))
    assert [orjson.loads(a)['email'] for a in again.column('attributes').to_pylist()] == [
        d['email'] for d in docs
    ]


def test_tombstones_refuse_unknown_keys():
    tombs = Tombstones(frozenset(['t_p9_' + '0' * 64]))
    with pytest.raises(secrets.SecretsError, match='p9'):
        tombs.check_keys(RING)
