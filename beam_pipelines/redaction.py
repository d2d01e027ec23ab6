"""Credentials out of what is shown: connection URLs and DSNs with their passwords masked.

Plain Python with no Beam in it, so the front doors (the HTTP service, the MQTT bridge) can log
the URLs they use without paying for Beam's imports.
"""

from __future__ import annotations

import re

__all__ = ['redact']


def redact(url: str | None) -> str:
    """A connection URL or DSN with any password replaced by ``***``."""
    if not url:
        return ''
    url = re.sub(r'(://[^:/@]*:)[^@]*@', r'\1***@', url)
    return re.sub(r'(password\s*=\s*)(\S+)', r'\1***', url, flags=re.IGNORECASE)
