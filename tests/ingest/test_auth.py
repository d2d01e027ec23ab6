"""Authentication of ingestion requests: shared secrets, signatures, rotation, replay window."""

from __future__ import annotations

import pytest

from beam_pipelines.ingest.auth import Authenticator
from beam_pipelines.ingest.auth import AuthError
from beam_pipelines.ingest.auth import load_secrets
from beam_pipelines.ingest.auth import sign

OLD = b'old-secret-0123456789'
NEW = b'new-secret-0123456789'
NOW = 1_800_000_000
BODY = b'{"event_id":"e1"}'


def auth(mode='any', secrets=(OLD, NEW)):
    return Authenticator(list(secrets), mode, tolerance_secs=300, clock=lambda: NOW)


def signed(secret=NEW, stamp=NOW, body=BODY):
    return {'X-Signature-Timestamp': str(stamp), 'X-Signature': sign(secret, stamp, body)}


def test_bearer_and_api_key_with_any_valid_secret():
    a = auth()
    a.check({'Authorization': f'Bearer {OLD.decode()}'}, BODY)
    a.check({'Authorization': f'bearer {NEW.decode()}'}, BODY)
    a.check({'X-API-Key': NEW.decode()}, BODY)


@pytest.mark.parametrize(
    'headers, reason',
    [
        ({}, 'missing credentials'),
        ({'Authorization': 'Bearer nope-nope-nope-nope'}, 'invalid credentials'),
        ({'Authorization': 'Basic abc'}, 'missing credentials'),
        ({**signed(), 'X-Signature': 'sha256=00'}, 'invalid signature'),
        (signed(stamp=NOW - 301), 'from the server clock'),
        (signed(stamp=NOW + 301), 'from the server clock'),
        ({**signed(), 'X-Signature-Timestamp': 'yesterday'}, 'unix seconds'),
        (signed(secret=b'someone-elses-secret!'), 'invalid signature'),
    ],
)
def test_refusals_say_why_without_echoing_secrets(headers, reason):
    with pytest.raises(AuthError, match=reason) as err:
        auth().check(headers, BODY)
    assert OLD.decode() not in str(err.value) and NEW.decode() not in str(err.value)


def test_a_signature_covers_the_body_and_the_timestamp():
    a = auth()
    a.check(signed(), BODY)
    a.check(signed(secret=OLD, stamp=NOW - 299), BODY)
    with pytest.raises(AuthError, match='invalid signature'):
        a.check(signed(), BODY + b' ')
    replayed = {**signed(stamp=NOW - 10), 'X-Signature-Timestamp': str(NOW)}
    with pytest.raises(AuthError, match='invalid signature'):
        a.check(replayed, BODY)


def test_modes_restrict_the_scheme():
    with pytest.raises(AuthError, match='signed requests only'):
        auth('hmac').check({'Authorization': f'Bearer {NEW.decode()}'}, BODY)
    with pytest.raises(AuthError, match='shared secret only'):
        auth('token').check(signed(), BODY)
    auth('hmac').check(signed(), BODY)


def test_everything_but_the_signature_is_checked_before_the_body():
    a = auth()
    assert a.precheck({'Authorization': f'Bearer {NEW.decode()}'}) is True
    assert a.precheck(signed()) is False  # the body is needed, and only then
    for headers in ({}, signed(stamp=NOW - 301), {'X-API-Key': 'wrong-wrong-wrong-wrong'}):
        with pytest.raises(AuthError):
            a.precheck(headers)


def test_header_values_that_are_not_ascii_are_refused_not_crashed_on():
    with pytest.raises(AuthError, match='invalid credentials'):
        auth().check({'X-API-Key': 'sécret-sécret-sécret'}, BODY)
    with pytest.raises(AuthError, match='invalid signature'):
        auth().check({**signed(), 'X-Signature': 'sha256=é'}, BODY)


def test_rotation_drops_the_old_secret():
    with pytest.raises(AuthError):
        auth(secrets=[NEW]).check({'Authorization': f'Bearer {OLD.decode()}'}, BODY)


def test_secrets_from_a_file_or_the_environment(tmp_path):
    path = tmp_path / 'secrets'
    path.write_text(f'# rotating\n{OLD.decode()}\n\n{NEW.decode()}\n')
    assert load_secrets(str(path)) == [OLD, NEW]
    env = {'BEAM_PIPELINES_INGEST_SECRETS': f'{OLD.decode()}, {NEW.decode()}'}
    assert load_secrets(None, env) == [OLD, NEW]
    with pytest.raises(ValueError, match='no secret'):
        load_secrets(None, {})
    with pytest.raises(ValueError, match='at least 16 bytes'):
        load_secrets(None, {'BEAM_PIPELINES_INGEST_SECRETS': 'short'})
