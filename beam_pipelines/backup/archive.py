"""Archive I/O through Beam's filesystems: local paths, ``s3://`` and ``gs://`` alike.

Every byte goes through :class:`~apache_beam.io.filesystems.FileSystems` with compression
switched off (Beam would otherwise gzip a ``.gz`` name on its own and the SHA-256 would no longer
be of the stored bytes). Streams are hashed and counted as they pass, so nothing is held whole in
memory.
"""

from __future__ import annotations

import hashlib
import logging
import os
import uuid
from collections.abc import Iterator

from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems

__all__ = [
    'CHUNK_BYTES',
    'HashingReader',
    'HashingWriter',
    'delete_tree',
    'is_local',
    'join',
    'list_files',
    'open_read',
    'open_write',
    'relative',
    'root',
    'write_atomically',
]

_LOGGER = logging.getLogger(__name__)
CHUNK_BYTES = 1 << 20


def is_local(path: str) -> bool:
    return FileSystems.get_scheme(path) is None


def root(location: str) -> str:
    """A location without its trailing slash; local paths made absolute (Beam's listings of a
    relative directory give relative paths, which would not compare with those given before)."""
    if not location:
        raise ValueError('an archive or output location must not be empty')
    if is_local(location):
        return os.path.abspath(location)
    return location.rstrip('/')


def join(base: str, *parts: str) -> str:
    return FileSystems.join(base, *parts)


def relative(path: str, base: str) -> str:
    """``path`` below ``base``, with ``/`` separators."""
    prefix = base.rstrip('/') + '/'
    if not path.startswith(prefix):
        raise ValueError(f'{path} is not below {base}')
    return path[len(prefix) :]


def list_files(base: str) -> list[str]:
    """Every file below ``base``, recursively (``**`` crosses directories), sorted."""
    result = FileSystems.match([join(base, '**')])[0]
    return sorted(m.path for m in result.metadata_list)


def open_read(path: str):
    return FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED)


def open_write(path: str, mime_type: str = 'application/octet-stream'):
    return FileSystems.create(path, mime_type, compression_type=CompressionTypes.UNCOMPRESSED)


def write_atomically(path: str, data: bytes, mime_type: str = 'application/json') -> None:
    """Writes ``data`` so that readers see all of it or nothing.

    Locally through a temporary name and a rename (atomic on POSIX). On object stores one PUT
    is already atomic, and Beam's rename there is a copy and a delete, which is not.
    """
    if not is_local(path):
        with open_write(path, mime_type) as f:
            f.write(data)
        return
    temp = f'{path}.tmp-{uuid.uuid4().hex[:8]}'
    with open_write(temp, mime_type) as f:
        f.write(data)
    FileSystems.rename([temp], [path])


def delete_tree(base: str) -> None:
    """Deletes every file below ``base`` (and, locally, the emptied directories)."""
    files = list_files(base)
    if files:
        FileSystems.delete(files)
    if is_local(base) and FileSystems.exists(base):
        FileSystems.delete([base])


class HashingWriter:
    """A write-only file object passing bytes to ``raw`` while hashing and counting them."""

    def __init__(self, raw):
        self._raw = raw
        self.digest = hashlib.sha256()
        self.bytes = 0

    def write(self, data) -> int:
        self._raw.write(data)
        self.digest.update(data)
        self.bytes += len(data)
        return len(data)

    def flush(self) -> None:
        """Nothing to do: the raw file is flushed when it is closed (gzip calls this)."""

    @property
    def sha256(self) -> str:
        return self.digest.hexdigest()


class HashingReader:
    """A read-only file object reading ``raw`` while hashing and counting what was read."""

    def __init__(self, raw):
        self._raw = raw
        self.digest = hashlib.sha256()
        self.bytes = 0

    def read(self, size: int = -1) -> bytes:
        data = self._raw.read(size)
        self.digest.update(data)
        self.bytes += len(data)
        return data

    def readable(self) -> bool:
        return True

    def drain(self) -> None:
        """Reads what is left, so the digest covers the whole file."""
        while self.read(CHUNK_BYTES):
            pass

    def chunks(self) -> Iterator[bytes]:
        while chunk := self.read(CHUNK_BYTES):
            yield chunk

    @property
    def sha256(self) -> str:
        return self.digest.hexdigest()
