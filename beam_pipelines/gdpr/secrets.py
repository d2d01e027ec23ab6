"""The GDPR secrets: pseudonym (HMAC) keys and master keys, from a file or the environment.

The secrets are JSON, read from ``--gdpr_secrets_file`` or, without it, from the environment
variable ``BP_GDPR_SECRETS`` (the JSON itself, as a Kubernetes or Dataflow secret injects it)::

    {"pseudonym_keys": {"active": "p2", "keys": {"p1": "<base64>", "p2": "<base64>"}},
     "master_keys": {"active": "m1", "keys": {"m1": "<base64 of 32 bytes>"}}}

``python -m beam_pipelines.gdpr keygen`` writes a new file; ``rotate`` adds a key and makes it
active. New pseudonyms use the active pseudonym key; the older keys stay, retired, because
tombstones and lookups made under them must keep matching (a key that still names a tombstone
cannot be dropped: :func:`load` refuses such a file when given the tombstones' key ids). Master
keys wrap the per-subject data keys; ``gdpr rewrap`` moves every data key to the active one,
after which an old master key can be dropped.

The keys never appear in ``repr``, logs or exceptions.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import os
import re
import secrets as _random

__all__ = ['ENV_VAR', 'GdprSecrets', 'KeyRing', 'SecretsError', 'generate', 'load', 'rotate']

ENV_VAR = 'BP_GDPR_SECRETS'
_KEY_ID = re.compile(r'^[A-Za-z0-9]{1,16}$')
_MIN_KEY_BYTES = 32


class SecretsError(ValueError):
    """Secrets that are missing or malformed (the message never holds key material)."""


@dataclasses.dataclass(frozen=True)
class KeyRing:
    """Keys by id, one of them active. ``repr`` shows the ids only."""

    active: str
    keys: dict[str, bytes] = dataclasses.field(repr=False)

    def __post_init__(self):
        for kid, key in self.keys.items():
            if not _KEY_ID.match(kid):
                raise SecretsError(f'key id {kid!r}: use 1-16 letters or digits')
            if len(key) < _MIN_KEY_BYTES:
                raise SecretsError(f'key {kid!r} is shorter than {_MIN_KEY_BYTES} bytes')
        if self.active not in self.keys:
            raise SecretsError(f'the active key {self.active!r} is not among the keys')

    @property
    def active_key(self) -> bytes:
        return self.keys[self.active]

    def to_json(self) -> dict:
        return {
            'active': self.active,
            'keys': {k: base64.b64encode(v).decode() for k, v in self.keys.items()},
        }

    @classmethod
    def from_json(cls, data: dict, what: str) -> KeyRing:
        try:
            keys = {k: base64.b64decode(v, validate=True) for k, v in data['keys'].items()}
            return cls(data['active'], keys)
        except SecretsError:
            raise
        except (KeyError, TypeError, AttributeError, ValueError):
            raise SecretsError(
                f'{what}: expected {{"active": ID, "keys": {{ID: base64}}}}'
            ) from None


@dataclasses.dataclass(frozen=True)
class GdprSecrets:
    """Both key rings."""

    pseudonym_keys: KeyRing
    master_keys: KeyRing

    def to_json(self) -> str:
        return json.dumps(
            {
                'pseudonym_keys': self.pseudonym_keys.to_json(),
                'master_keys': self.master_keys.to_json(),
            },
            indent=2,
        )


def _new_key() -> bytes:
    return _random.token_bytes(32)


def generate() -> GdprSecrets:
    """New secrets with one key in each ring."""
    return GdprSecrets(KeyRing('p1', {'p1': _new_key()}), KeyRing('m1', {'m1': _new_key()}))


def rotate(current: GdprSecrets, ring: str) -> GdprSecrets:
    """Adds a new key to ``ring`` ('pseudonym' or 'master') and makes it active."""
    if ring not in ('pseudonym', 'master'):
        raise SecretsError(f"ring must be 'pseudonym' or 'master', got {ring!r}")
    old = current.pseudonym_keys if ring == 'pseudonym' else current.master_keys
    prefix = 'p' if ring == 'pseudonym' else 'm'
    n = 1 + max(int(k[1:]) for k in old.keys if k[1:].isdigit() and k[0] == prefix)
    kid = f'{prefix}{n}'
    new = KeyRing(kid, {**old.keys, kid: _new_key()})
    if ring == 'pseudonym':
        return dataclasses.replace(current, pseudonym_keys=new)
    return dataclasses.replace(current, master_keys=new)


def _read(path: str) -> str:
    if '://' in path:  # gs://, s3://: workers read the file where the launcher names it
        from apache_beam.io.filesystems import FileSystems

        try:
            with FileSystems.open(path) as f:
                return f.read().decode('utf-8')
        except Exception as exc:  # each filesystem raises its own errors
            raise SecretsError(f'--gdpr_secrets_file {path}: {type(exc).__name__}') from None
    try:
        with open(path, encoding='utf-8') as f:
            return f.read()
    except OSError as exc:
        raise SecretsError(f'--gdpr_secrets_file {path}: {exc.strerror}') from None


def load(path: str | None = None, env: dict | None = None) -> GdprSecrets:
    """Reads the secrets from ``path`` (local, or any Beam filesystem) or, without one, from
    ``$BP_GDPR_SECRETS``.

    Raises:
        SecretsError: when there are none, or they are malformed.
    """
    env = os.environ if env is None else env
    if path:
        text, where = _read(path), path
    elif env.get(ENV_VAR):
        text, where = env[ENV_VAR], f'${ENV_VAR}'
    else:
        raise SecretsError(f'no GDPR secrets: pass --gdpr_secrets_file or set ${ENV_VAR}')
    try:
        data = json.loads(text)
    except ValueError:
        raise SecretsError(f'{where}: not JSON') from None
    if not isinstance(data, dict):
        raise SecretsError(f'{where}: expected a JSON object')
    return GdprSecrets(
        KeyRing.from_json(data.get('pseudonym_keys'), f'{where}: pseudonym_keys'),
        KeyRing.from_json(data.get('master_keys'), f'{where}: master_keys'),
    )
