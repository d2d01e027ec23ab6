"""The backfill's resumable record: one JSON line per finished attempt of a partition.

A partition counts as done when its last attempt succeeded with the same launcher arguments, so
a rerun of the same backfill skips it, and a changed command line does it again. Lines are
appended and flushed one at a time, so a killed backfill loses at most the partitions still
running, which are simply run again.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading

__all__ = ['Record', 'args_digest']


def args_digest(args: list[str]) -> str:
    return hashlib.sha256('\0'.join(args).encode()).hexdigest()[:16]


class Record:
    """Attempts of a backfill, kept in a JSON Lines file."""

    def __init__(self, path: str):
        self.path = path
        self._lock = threading.Lock()

    def load(self) -> dict[str, dict]:
        """The last attempt of each partition (a torn last line is ignored)."""
        last: dict[str, dict] = {}
        if not os.path.exists(self.path):
            return last
        with open(self.path, encoding='utf-8') as f:
            for line in f:
                try:
                    entry = json.loads(line)
                except json.JSONDecodeError:
                    continue  # a line cut short by a kill
                last[entry['partition']] = entry
        return last

    def done(self, digests: dict[str, str]) -> set[str]:
        """Partitions whose last attempt succeeded with the arguments ``digests`` names."""
        return {
            name
            for name, entry in self.load().items()
            if entry.get('status') == 'succeeded' and entry.get('args') == digests.get(name)
        }

    def add(self, entry: dict) -> None:
        os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
        line = json.dumps(entry, sort_keys=True) + '\n'
        with self._lock, open(self.path, 'a', encoding='utf-8') as f:
            f.write(line)
            f.flush()
            os.fsync(f.fileno())
