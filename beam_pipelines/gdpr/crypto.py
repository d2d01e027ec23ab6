"""Field encryption with per-subject data keys (AES-256-GCM), for values that must stay
recoverable; erasing a subject deletes its key, which shreds every copy (crypto-shredding).

Each subject has a random 256-bit data key, stored only wrapped (AES-GCM) by a master key from
the secrets (:mod:`beam_pipelines.gdpr.keystore`). A ciphertext reads ``enc1.<base64url>`` of
``nonce (12 bytes) || ciphertext || tag``; its associated data binds it to the subject and the
field, so a ciphertext moved to another subject or field does not decrypt.
"""

from __future__ import annotations

import base64
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

__all__ = [
    'PREFIX',
    'CryptoError',
    'decrypt_value',
    'encrypt_value',
    'is_ciphertext',
    'new_data_key',
    'unwrap_key',
    'wrap_key',
]

PREFIX = 'enc1.'
_NONCE = 12


class CryptoError(ValueError):
    """A ciphertext that does not decrypt (wrong key, wrong subject or field, or tampered)."""


def new_data_key() -> bytes:
    return AESGCM.generate_key(bit_length=256)


def _aad(*parts: str) -> bytes:
    return '\x1f'.join(parts).encode('utf-8')


def wrap_key(data_key: bytes, master_key: bytes, subject: str) -> bytes:
    nonce = os.urandom(_NONCE)
    return nonce + AESGCM(master_key).encrypt(nonce, data_key, _aad('key', subject))


def unwrap_key(wrapped: bytes, master_key: bytes, subject: str) -> bytes:
    try:
        return AESGCM(master_key).decrypt(wrapped[:_NONCE], wrapped[_NONCE:], _aad('key', subject))
    except InvalidTag:
        raise CryptoError('a data key does not unwrap with its master key') from None


def encrypt_value(value: str, data_key: bytes, subject: str, field: str) -> str:
    nonce = os.urandom(_NONCE)
    sealed = AESGCM(data_key).encrypt(nonce, value.encode('utf-8'), _aad(subject, field))
    return PREFIX + base64.urlsafe_b64encode(nonce + sealed).decode('ascii')


def decrypt_value(token: str, data_key: bytes, subject: str, field: str) -> str:
    if not is_ciphertext(token):
        raise CryptoError(f'{field}: not a ciphertext')
    raw = base64.urlsafe_b64decode(token[len(PREFIX) :])
    try:
        return AESGCM(data_key).decrypt(raw[:_NONCE], raw[_NONCE:], _aad(subject, field)).decode()
    except InvalidTag:
        raise CryptoError(f'{field}: does not decrypt for this subject') from None


def is_ciphertext(value) -> bool:
    return isinstance(value, str) and value.startswith(PREFIX)
