"""Private PostgreSQL and Redis servers that fault injection may stop, kill and pause.

The chaos runs stop their database mid-run; doing that to the machine's shared servers would
break every other client (a test suite running beside them, say). Each server here is a
throw-away instance on a free port, in a temporary directory: a PostgreSQL cluster made with
``initdb`` and driven with ``pg_ctl`` (``stop -m immediate`` is the crash the chaos runs want),
and a ``redis-server`` that keeps nothing on disk, as the shared one.

PostgreSQL refuses to run as root; as root, the cluster runs as the ``postgres`` user.
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time

__all__ = ['PrivatePostgres', 'PrivateRedis', 'free_port']


def free_port() -> int:
    with contextlib.closing(socket.socket()) as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def _pg_bin(name: str) -> str:
    found = shutil.which(name) or next(
        iter(sorted(glob.glob(f'/usr/lib/postgresql/*/bin/{name}'))), None
    )
    if found is None:
        raise RuntimeError(f'{name} not found (PostgreSQL server binaries are needed)')
    return found


class PrivatePostgres:
    """A PostgreSQL cluster of its own (trust auth, database ``chaos``); a context manager."""

    def __init__(self):
        self.port = free_port()
        self._dir = tempfile.mkdtemp(prefix='bp-chaos-pg-')
        self._data = os.path.join(self._dir, 'data')
        self._as = ['runuser', '-u', 'postgres', '--'] if os.geteuid() == 0 else []
        if self._as:
            shutil.chown(self._dir, 'postgres')

    @property
    def url(self) -> str:
        return f'postgresql://postgres@127.0.0.1:{self.port}/chaos'

    def __enter__(self) -> PrivatePostgres:
        self._pg('initdb', '-D', self._data, '-A', 'trust', '-U', 'postgres', '--no-sync')
        self.start()
        subprocess.run(
            [
                _pg_bin('createdb'),
                '-h',
                '127.0.0.1',
                '-p',
                str(self.port),
                '-U',
                'postgres',
                'chaos',
            ],
            check=True,
            capture_output=True,
        )
        return self

    def __exit__(self, *exc) -> None:
        with contextlib.suppress(subprocess.CalledProcessError):
            self.stop()
        shutil.rmtree(self._dir, ignore_errors=True)

    def start(self) -> None:
        self._pg(
            'pg_ctl', '-D', self._data, '-l', os.path.join(self._dir, 'log'), '-w', 'start',
            '-o', f'-p {self.port} -k {self._dir} -c listen_addresses=127.0.0.1',
        )  # fmt: skip

    def stop(self, mode: str = 'fast') -> None:
        """``mode='immediate'``: the server quits at once, as on a crash (recovery at start)."""
        self._pg('pg_ctl', '-D', self._data, '-m', mode, '-w', 'stop')

    def _pg(self, name: str, *args: str) -> None:
        subprocess.run([*self._as, _pg_bin(name), *args], check=True, capture_output=True)


class PrivateRedis:
    """A ``redis-server`` of its own that keeps nothing on disk; a context manager."""

    def __init__(self):
        self.port = free_port()
        self._process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f'redis://127.0.0.1:{self.port}/0'

    def __enter__(self) -> PrivateRedis:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.kill()

    def start(self) -> None:
        self._process = subprocess.Popen(
            [
                shutil.which('redis-server') or 'redis-server',
                *('--port', str(self.port), '--bind', '127.0.0.1', '--save', ''),
                *('--appendonly', 'no', '--dir', tempfile.gettempdir()),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with (
                contextlib.suppress(OSError),
                socket.create_connection(('127.0.0.1', self.port), 0.2),
            ):
                return
            time.sleep(0.05)
        raise RuntimeError(f'redis-server did not start on port {self.port}')

    def kill(self) -> None:
        """SIGKILL: what a crash does (everything in memory is gone)."""
        if self._process is not None and self._process.poll() is None:
            self._process.send_signal(signal.SIGKILL)
            self._process.wait()
        self._process = None
