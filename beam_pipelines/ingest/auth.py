"""Authentication of ingestion requests: a shared secret, or an HMAC-SHA-256 signature.

Two schemes, either accepted by default (``mode='any'``):

* **Shared secret**: ``Authorization: Bearer <secret>`` or ``X-API-Key: <secret>``.
* **Signature** (webhooks: the secret never travels): ``X-Signature-Timestamp: <unix
  seconds>`` and ``X-Signature: sha256=<hex>``, the HMAC-SHA-256 with the secret of
  ``<timestamp>.<body>``. The timestamp is signed and must lie within ``tolerance_secs`` of the
  server's clock, so a captured request cannot be replayed after that (the scheme Stripe and
  Slack use); a replay within it only repeats events, which the pipeline drops as duplicates of
  their ``event_id``.

Several secrets may be valid at once, so a secret is rotated by adding the new one, moving the
clients, then removing the old one. Comparisons are constant-time (``hmac.compare_digest``).
Secrets are never logged or echoed: failures say which header was wrong, not what it held.
Everything but the signature itself is checked before the body is read (:meth:`Authenticator.
precheck`), so requests without valid credentials cannot make the server buffer bodies.
Plain Python, no web framework or Beam in it.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import time
from collections.abc import Mapping
from collections.abc import Sequence

__all__ = ['AllowAll', 'AuthError', 'Authenticator', 'load_secrets', 'sign']

MODES = ('token', 'hmac', 'any')
SIGNATURE_HEADER = 'X-Signature'
TIMESTAMP_HEADER = 'X-Signature-Timestamp'
SECRETS_ENV = 'BEAM_PIPELINES_INGEST_SECRETS'


class AuthError(Exception):
    """A request that does not authenticate; the message is safe to return to the client."""


def sign(secret: bytes, timestamp: int | str, body: bytes) -> str:
    """The ``X-Signature`` value for a body sent at ``timestamp`` (for clients and tests)."""
    digest = hmac.new(secret, f'{timestamp}.'.encode() + body, hashlib.sha256).hexdigest()
    return f'sha256={digest}'


def load_secrets(
    path: str | None = None, env: Mapping[str, str] = os.environ, env_name: str = SECRETS_ENV
) -> list[bytes]:
    """The valid secrets: one per line of ``path`` (blank lines and ``#`` comments skipped),
    else the comma-separated environment variable ``env_name``.

    Raises:
        ValueError: no secret found, or one shorter than 16 bytes.
    """
    if path:
        with open(path, encoding='utf-8') as f:
            lines = [line.strip() for line in f]
        secrets = [line for line in lines if line and not line.startswith('#')]
        origin = path
    else:
        secrets = [s.strip() for s in env.get(env_name, '').split(',') if s.strip()]
        origin = env_name
    if not secrets:
        raise ValueError(f'no secret in {origin}')
    if any(len(s.encode()) < 16 for s in secrets):
        raise ValueError(f'secrets in {origin} must be at least 16 bytes long')
    return [s.encode() for s in secrets]


class Authenticator:
    """Checks a request's headers (and body, for signatures) against the valid secrets.

    Args:
        secrets: the valid secrets (see :func:`load_secrets`).
        mode: ``'token'``, ``'hmac'`` or ``'any'`` (either scheme).
        tolerance_secs: how far a signature's timestamp may be from the server's clock.
        clock: seconds since the epoch (injected by tests).
    """

    def __init__(
        self,
        secrets: Sequence[bytes],
        mode: str = 'any',
        tolerance_secs: float = 300.0,
        clock=time.time,
    ):
        if mode not in MODES:
            raise ValueError(f'mode must be one of {MODES}, got {mode!r}')
        if not secrets:
            raise ValueError('secrets must not be empty')
        if tolerance_secs <= 0:
            raise ValueError(f'tolerance_secs must be > 0, got {tolerance_secs}')
        self._secrets = [bytes(s) for s in secrets]
        self.mode = mode
        self._tolerance = tolerance_secs
        self._clock = clock

    def precheck(self, headers: Mapping[str, str]) -> bool:
        """Everything that can be checked before the body is read, so a request without valid
        credentials is refused before the server buffers its body.

        Returns:
            True: a valid shared secret authenticated the request. False: the request carries a
            signature with a fresh timestamp; :meth:`check_signature` must see the body.

        Raises:
            AuthError: missing or wrong credentials, a stale timestamp, or a scheme the mode
                does not accept.
        """
        token = _bearer(headers.get('Authorization')) or headers.get('X-API-Key')
        if token is not None:
            if self.mode == 'hmac':
                raise AuthError('this endpoint takes signed requests only (X-Signature)')
            if not any(hmac.compare_digest(_encode(token), s) for s in self._secrets):
                raise AuthError('invalid credentials')
            return True
        if headers.get(SIGNATURE_HEADER) is None:
            wanted = {
                'token': 'Authorization: Bearer <secret> (or X-API-Key)',
                'hmac': f'{SIGNATURE_HEADER} and {TIMESTAMP_HEADER}',
                'any': f'Authorization: Bearer <secret>, or {SIGNATURE_HEADER} and '
                f'{TIMESTAMP_HEADER}',
            }[self.mode]
            raise AuthError(f'missing credentials: send {wanted}')
        if self.mode == 'token':
            raise AuthError('this endpoint takes a shared secret only (Authorization)')
        try:
            sent = int(headers.get(TIMESTAMP_HEADER, '').strip())
            # A timestamp of hundreds of digits is a valid int but no float: comparing it with
            # the clock raised OverflowError, an unauthenticated client's way to a 500.
            skew = abs(self._clock() - sent)
        except (ValueError, OverflowError):
            raise AuthError(f'{TIMESTAMP_HEADER} must be unix seconds') from None
        if skew > self._tolerance:
            raise AuthError(
                f'{TIMESTAMP_HEADER} is more than {self._tolerance:.0f} s from the server clock'
            )
        return False

    def check_signature(self, headers: Mapping[str, str], body: bytes) -> None:
        """Verifies the signature of a request :meth:`precheck` passed on (returned False).

        Raises:
            AuthError: the signature does not match the body and timestamp.
        """
        stamp = headers.get(TIMESTAMP_HEADER, '').strip()
        given = _encode(headers.get(SIGNATURE_HEADER, ''))
        if not any(
            hmac.compare_digest(given, sign(s, stamp, body).encode()) for s in self._secrets
        ):
            raise AuthError('invalid signature')

    def check(self, headers: Mapping[str, str], body: bytes) -> None:
        """Authenticates a whole request (:meth:`precheck`, then the signature if needed).

        Raises:
            AuthError: with a reason safe to return.
        """
        if not self.precheck(headers):
            self.check_signature(headers, body)


def _encode(value: str) -> bytes:
    # Header values arrive as str; one that is not ASCII cannot match a secret (and must not
    # make the server fail).
    try:
        return value.strip().encode('ascii')
    except UnicodeEncodeError:
        return b''


def _bearer(value: str | None) -> str | None:
    if not value:
        return None
    scheme, _, token = value.partition(' ')
    return token if scheme.lower() == 'bearer' and token else None


class AllowAll:
    """No authentication (``--insecure_no_auth``: local development behind a firewall only)."""

    mode = 'none'

    def precheck(self, headers: Mapping[str, str]) -> bool:
        return True

    def check_signature(self, headers: Mapping[str, str], body: bytes) -> None:
        return None

    def check(self, headers: Mapping[str, str], body: bytes) -> None:
        return None
