"""``ProtectEvents`` and ``ForgetErased``: personal data protected as events enter the pipeline.

``ProtectEvents`` drops the records of erased subjects, pseudonymises and encrypts the declared
fields of clean event tables (:mod:`beam_pipelines.gdpr.protect`); ``ForgetErased`` drops the
dead letters that carry an erased subject's values. Both emit, on a second output, how many
records they dropped, so the run still accounts for every record read.

Workers load the secrets, the tombstones and a key-store connection in ``setup()`` and reload
the tombstones every ``refresh_secs``, so a long streaming job honours erasures made while it
runs.
"""

from __future__ import annotations

import time
from typing import NamedTuple

import apache_beam as beam
import pyarrow as pa
from apache_beam import pvalue

from beam_pipelines.gdpr.config import GdprConfig
from beam_pipelines.gdpr.keystore import KeyStore
from beam_pipelines.gdpr.matching import envelope_tombstoned
from beam_pipelines.gdpr.protect import protect_table
from beam_pipelines.gdpr.tombstones import Tombstones
from beam_pipelines.gdpr.tombstones import load_tombstones
from beam_pipelines.io.postgres import connect
from beam_pipelines.observability.metrics import counter

__all__ = ['ERASED', 'ForgetErased', 'ProtectEvents', 'Protected']

ERASED = 'erased'


class Protected(NamedTuple):
    kept: beam.PCollection
    erased: beam.PCollection  # ints: records dropped as erased


class _GdprFn(beam.DoFn):
    def __init__(self, config: GdprConfig):
        self._config = config

    def setup(self):
        secrets = self._config.secrets()
        self._ring = secrets.pseudonym_keys
        self._conn = None
        self._keys = None
        if self._config.store_url is not None:
            self._conn = connect(self._config.store_url)
            self._conn.autocommit = True
            self._keys = KeyStore(self._conn, self._config.store_schema, secrets.master_keys)
        self._loaded_at = -float('inf')
        self._tombstones = Tombstones(frozenset())
        self._erased = counter('records_erased')
        self._refresh()

    def _refresh(self):
        if self._conn is None or time.monotonic() - self._loaded_at < self._config.refresh_secs:
            return
        tombstones = load_tombstones(self._conn, self._config.store_schema)
        tombstones.check_keys(self._ring)
        self._tombstones = tombstones
        self._loaded_at = time.monotonic()

    def teardown(self):
        if getattr(self, '_conn', None) is not None:
            self._conn.close()
            self._conn = None


class _ProtectFn(_GdprFn):
    def process(self, table: pa.Table):
        self._refresh()
        keys_for = self._keys.keys_for if self._keys is not None else None
        kept, erased = protect_table(
            table, self._config.policy, self._ring, self._tombstones, keys_for
        )
        if erased:
            self._erased.inc(erased)
            yield pvalue.TaggedOutput(ERASED, erased)
        if kept.num_rows:
            yield kept


class _ForgetFn(_GdprFn):
    def process(self, envelope: dict):
        self._refresh()
        if self._tombstones and envelope_tombstoned(envelope, self._tombstones, self._ring):
            self._erased.inc()
            yield pvalue.TaggedOutput(ERASED, 1)
        else:
            yield envelope


class _WithErased(beam.PTransform):
    """Applies a ``_GdprFn``; its main output and its count of erased records."""

    _FN: type[_GdprFn]
    _LABEL: str

    def __init__(self, config: GdprConfig):
        super().__init__()
        self._config = config

    def expand(self, pcoll) -> Protected:
        out = pcoll | self._LABEL >> beam.ParDo(self._FN(self._config)).with_outputs(
            ERASED, main='kept'
        )
        return Protected(out.kept, out[ERASED])


class ProtectEvents(_WithErased):
    """Clean event tables -> protected tables (see the module docstring)."""

    _FN, _LABEL = _ProtectFn, 'Protect'


class ForgetErased(_WithErased):
    """Dead-letter envelopes -> those of subjects not erased."""

    _FN, _LABEL = _ForgetFn, 'Forget'
