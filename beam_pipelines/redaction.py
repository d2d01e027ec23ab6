"""Credentials out of what is shown: connection URLs and DSNs with their passwords masked, and
the secret parts of web URLs (webhook tokens in paths, API keys in query strings).

Plain Python with no Beam in it, so the front doors (the HTTP service, the MQTT bridge) can log
the URLs they use without paying for Beam's imports.

A webhook URL is a capability: whoever knows it can post (Slack's
``https://hooks.slack.com/services/T.../B.../<token>``, Discord's, Teams'). :func:`redact`
masks the parts of web URLs that look like credentials; :func:`redact_capability_url` shows a
webhook URL as its origin only; :func:`url_secrets` and :func:`scrub` take a URL's secrets out
of any text or record, such as an error message that quotes the path the server was asked for.
"""

from __future__ import annotations

import re
import urllib.parse
from collections.abc import Iterable
from typing import Any

__all__ = ['MASK', 'redact', 'redact_capability_url', 'scrub', 'url_secrets']

MASK = '***'
_WEB_URL = re.compile(r'\b(?:https?|wss?|ftp)://[^\s\'"<>`]+', re.IGNORECASE)
# Query parameters that carry credentials: token, api_key, apikey, access_token, secret,
# password, sig (Azure SAS), X-Amz-Signature / X-Amz-Credential / X-Amz-Security-Token, code...
_SECRET_PARAM = re.compile(r'pass|pwd|secret|token|key|sig|auth|cred|session|code', re.IGNORECASE)
# A path segment that looks like a generated token (at least 16 characters mixing letters and
# digits): Slack's, Discord's and Telegram's webhook tokens, UUIDs. Words and dates are not.
_TOKEN_LIKE = re.compile(r'(?=[^/]*[A-Za-z])(?=[^/]*\d)[A-Za-z0-9._~%+=:\-]{16,}')
# A DSN's password, bare or single-quoted (libpq's ``password='two words'``, with ``\'`` and
# ``\\`` escapes): a bare-word pattern alone masked only up to the first space of a quoted one.
_DSN_PASSWORD = re.compile(r"(password\s*=\s*)('(?:[^'\\]|\\.)*'?|\S+)", re.IGNORECASE)


def redact(url: str | None) -> str:
    """A connection URL or DSN with any password replaced by ``***``; also applied to text that
    contains URLs. In web (http, https, ws, ftp) URLs, the values of query parameters named like
    credentials and path segments that look like tokens are masked too."""
    if not url:
        return ''
    url = re.sub(r'(://[^:/@]*:)[^@]*@', r'\1***@', url)
    url = _DSN_PASSWORD.sub(r'\1***', url)
    return _WEB_URL.sub(lambda m: _redact_web_url(m.group(0)), url)


def _redact_web_url(url: str) -> str:
    rest, hash_, fragment = url.partition('#')
    rest, query_mark, query = rest.partition('?')
    scheme, _, after = rest.partition('://')
    netloc, slash, path = after.partition('/')
    path = '/'.join(MASK if _TOKEN_LIKE.fullmatch(s) else s for s in path.split('/'))
    return (
        f'{scheme}://{netloc}{slash}{path}'
        f'{query_mark}{_redact_params(query)}{hash_}{_redact_params(fragment)}'
    )


def _redact_params(text: str) -> str:
    out = []
    for item in text.split('&') if text else []:
        name, eq, value = item.partition('=')
        if eq and value and (_SECRET_PARAM.search(name) or _TOKEN_LIKE.fullmatch(value)):
            value = MASK
        out.append(f'{name}{eq}{value}')
    return '&'.join(out)


def redact_capability_url(url: str | None) -> str:
    """A URL whose path and query are themselves the secret (a webhook), as its origin only:
    ``https://hooks.slack.com/***``; any password masked."""
    if not url:
        return ''
    parts = urllib.parse.urlsplit(url)
    if not parts.scheme or not parts.hostname:
        return MASK
    origin = f'{parts.scheme}://{parts.hostname}' + (f':{parts.port}' if parts.port else '')
    hidden = (parts.path not in ('', '/')) or parts.query or parts.fragment
    return origin + ('/' + MASK if hidden else parts.path)


def url_secrets(url: str | None, capability: bool = False) -> list[str]:
    """The parts of ``url`` that are credentials, as they may appear in text: the password, the
    values of credential-like query parameters and token-like path segments, each also
    percent-decoded. With ``capability`` (a webhook URL, where the path is the secret), every path
    segment and query value of 6 or more characters as well.

    Returns:
        The secrets, longest first (so :func:`scrub` replaces a secret before its parts).
    """
    if not url:
        return []
    parts = urllib.parse.urlsplit(url)
    found = set()
    if parts.password:
        found.add(parts.password)
    for name, value in urllib.parse.parse_qsl(
        '&'.join(p for p in (parts.query, parts.fragment) if p), keep_blank_values=False
    ):
        if _SECRET_PARAM.search(name) or _TOKEN_LIKE.fullmatch(value) or capability:
            found.add(value)
    for segment in parts.path.split('/'):
        if _TOKEN_LIKE.fullmatch(segment) or capability:
            found.add(segment)
    dsn = _DSN_PASSWORD.search(url)
    if dsn:
        found.add(dsn.group(2).strip("'"))
    minimum = 6 if capability else 1
    out = set()
    for secret in found:
        for form in (secret, urllib.parse.unquote(secret), urllib.parse.quote(secret, safe='')):
            if len(form) >= minimum:
                out.add(form)
    return sorted(out, key=lambda s: (-len(s), s))


def scrub(value: Any, secrets: Iterable[str], fields: Iterable[str] | None = None) -> Any:
    """``value`` with every occurrence of the ``secrets`` replaced by ``***``: in a string, or in
    the strings and bytes anywhere inside dicts, lists and tuples (a dead-letter envelope).

    Args:
        value: the text or record.
        secrets: the strings to hide (see :func:`url_secrets`).
        fields: for a dict, only these keys are scrubbed (None: all).
    """
    secrets = sorted({s for s in secrets if s}, key=lambda s: (-len(s), s))
    if not secrets:
        return value
    if fields is not None and isinstance(value, dict):
        wanted = set(fields)
        return {k: _scrub(v, secrets) if k in wanted else v for k, v in value.items()}
    return _scrub(value, secrets)


def _scrub(value: Any, secrets: list[str]) -> Any:
    if isinstance(value, str):
        for secret in secrets:
            value = value.replace(secret, MASK)
        return value
    if isinstance(value, bytes):
        for secret in secrets:
            value = value.replace(secret.encode(), MASK.encode())
        return value
    if isinstance(value, dict):
        return {k: _scrub(v, secrets) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(_scrub(v, secrets) for v in value)
    return value
