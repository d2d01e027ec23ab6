"""Event encodings on the wire (stream entries and messages): JSON, CSV or Avro.

Stream sources hand the parser batches of raw records; a ``WireFormat`` decodes CSV lines or
Avro records into records (dicts) first, which the parser takes as it takes Avro files, so
everything after the source is the same for every format.

* ``json``: as is.
* ``csv``: one record per message, with the columns given (no header on the wire); empty
  fields are missing values.
* ``avro``: Avro binary records, either with one schema for all (an ``.avsc`` file), or in the
  schema-registry wire format (a zero byte, the schema id as 4 big-endian bytes, the record),
  with schemas fetched by id from a Confluent-compatible registry
  (``GET {url}/schemas/ids/{id}``) and cached.

A record that does not decode becomes a dead letter (stage ``parse``, error type
``csv_decode_error`` or ``avro_decode_error``) with its raw bytes (base64 when not UTF-8), so
nothing is dropped. An Avro record must fill its message: bytes left over mean another schema
wrote it, and reading it with ours would drop (or misread) what that schema added.
"""

from __future__ import annotations

import csv
import io
import json
import struct
import urllib.request

import fastavro

from beam_pipelines.columnar.batch import RawBatch

__all__ = ['WireFormat']

_NAMES = {'csv': 'CSV', 'avro': 'Avro'}


class WireFormat:
    """How records are encoded on the wire (see the module docstring).

    Args:
        kind: 'json', 'csv' or 'avro'.
        csv_columns: the CSV columns, in order (csv).
        avro_schema: an Avro schema as JSON text (avro, one schema for every record).
        registry_url: a schema registry (avro, registry wire format).
    """

    def __init__(
        self,
        kind: str = 'json',
        csv_columns: tuple[str, ...] = (),
        avro_schema: str | None = None,
        registry_url: str | None = None,
    ):
        if kind not in ('json', 'csv', 'avro'):
            raise ValueError(f'wire format must be json, csv or avro, got {kind!r}')
        if kind == 'csv' and not csv_columns:
            raise ValueError('the csv wire format needs its columns')
        if kind == 'avro' and (avro_schema is None) == (registry_url is None):
            raise ValueError('the avro wire format needs a schema file or a registry, not both')
        self.kind = kind
        self._columns = tuple(csv_columns)
        self._schema_text = avro_schema
        self._registry = registry_url.rstrip('/') if registry_url else None
        self._schemas: dict[int, object] = {}
        self._parsed = None

    def __getstate__(self):
        state = dict(self.__dict__)
        state['_schemas'], state['_parsed'] = {}, None  # parsed schemas are rebuilt per worker
        return state

    def decode_batch(self, batch: RawBatch) -> RawBatch:
        """A batch of raw records (``lines``) as decoded records plus decoding failures."""
        if self.kind == 'json':
            return batch
        records, positions, failures = [], [], []
        decode = self._csv if self.kind == 'csv' else self._avro
        for raw, position in zip(batch.lines, batch.positions, strict=True):
            try:
                records.append(decode(raw))
                positions.append(position)
            except Exception as exc:  # any decoding failure becomes a dead letter
                reason = f'{type(exc).__name__}: {exc}' if str(exc) else type(exc).__name__
                if not raw:
                    reason = f'an empty message ({reason})'
                failures.append(
                    (
                        f'{self.kind}_decode_error',
                        f'not a valid {_NAMES[self.kind]} record: {reason}',
                        raw,
                        position,
                    )
                )
        return RawBatch(batch.uri, self.kind, positions, records=records, failures=tuple(failures))

    def _csv(self, raw: bytes) -> dict:
        (fields,) = list(csv.reader([raw.decode('utf-8').rstrip('\r\n')]))
        if len(fields) != len(self._columns):
            raise ValueError(f'{len(fields)} fields, expected {len(self._columns)}')
        return {k: v for k, v in zip(self._columns, fields, strict=True) if v != ''}

    def _avro(self, raw: bytes) -> dict:
        if self._registry is None:
            if self._parsed is None:
                self._parsed = fastavro.parse_schema(json.loads(self._schema_text))
            return _read_whole(raw, self._parsed)
        if len(raw) < 5 or raw[0] != 0:
            raise ValueError('not in the schema-registry wire format')
        (schema_id,) = struct.unpack('>I', raw[1:5])
        return _read_whole(raw[5:], self._registry_schema(schema_id))

    def _registry_schema(self, schema_id: int):
        if schema_id not in self._schemas:
            url = f'{self._registry}/schemas/ids/{schema_id}'
            with urllib.request.urlopen(url, timeout=10) as response:
                text = json.loads(response.read())['schema']
            self._schemas[schema_id] = fastavro.parse_schema(json.loads(text))
        return self._schemas[schema_id]


def _read_whole(data: bytes, schema) -> dict:
    """One Avro record that must fill the message: bytes left over mean it was written with
    another schema (fields added at the end, say), whose data the record read would drop."""
    buffer = io.BytesIO(data)
    record = fastavro.schemaless_reader(buffer, schema)
    left = len(data) - buffer.tell()
    if left:
        raise ValueError(f'{left} bytes left after the record: written with another schema?')
    return record
