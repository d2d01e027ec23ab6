"""``ReadFromRestApi``: a REST API polled on a schedule (``PeriodicImpulse``), as raw batches.

Each tick of Beam's ``PeriodicImpulse`` runs one :meth:`RestPoller.poll` in a stateful DoFn
whose state is the API's :class:`Cursor`, so each poll asks only for what is new and records
are read once (see ``rest_api`` for pagination, rate limits and retries). Beam commits the state
together with the poll's output, so on Flink or Dataflow a poll that fails is redone from the
same cursor. Without ``poll_secs`` the read is one poll (``Impulse``): a bounded read for batch
runs and tests.

For incremental bounded runs (``state_file``), the cursor is also read from a file at the start
and the new one written to a pending file, given on the ``state`` output as
``(pending, final)``: the launcher moves it into place only after the run's outputs are written,
as it does for the aggregation state.

Watermark: the elements carry the tick's timestamp, so the watermark follows the poll
schedule, not the records' event times (an API cannot say what it will still return for the
past). Give ``--allowed_lateness_secs`` at least the poll interval plus the API's own delay.

The API token, if any, is read in ``setup()`` from ``token_file`` (any Beam filesystem) and
never becomes part of the pipeline's graph.
"""

from __future__ import annotations

import time
from typing import NamedTuple

import apache_beam as beam
import requests
from apache_beam import pvalue
from apache_beam.coders import PickleCoder
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics import Metrics
from apache_beam.transforms.periodicsequence import PeriodicImpulse
from apache_beam.transforms.userstate import ReadModifyWriteStateSpec
from apache_beam.utils.timestamp import Duration
from apache_beam.utils.timestamp import Timestamp

from beam_pipelines.columnar.batch import RawBatch
from beam_pipelines.io import coders  # noqa: F401  (registers the batch coders)
from beam_pipelines.io.rest_api import Cursor
from beam_pipelines.io.rest_api import RestApiSpec
from beam_pipelines.io.rest_api import RestPoller
from beam_pipelines.throttling import RetryPolicy

__all__ = ['ReadFromRestApi', 'RestRead', 'load_cursor']

NAMESPACE = 'beam_pipelines'
STATE = 'state'
_SEQ_BITS = 20  # positions: poll time in ms, then the record's index in the poll


class RestRead(NamedTuple):
    batches: beam.PCollection  # RawBatch elements
    state: beam.PCollection  # (pending, final) cursor files; empty without a state_file


def load_cursor(path: str | None) -> Cursor:
    """The cursor kept at ``path``, or a new one when there is none yet."""
    if path is None or not FileSystems.exists(path):
        return Cursor()
    with FileSystems.open(path) as f:
        return Cursor.from_json(f.read())


class ReadFromRestApi(beam.PTransform):
    """Polls a REST API into :class:`RawBatch` elements (see the module docstring).

    Args:
        spec: the API.
        poll_secs: poll every this many seconds (unbounded); None: poll once.
        stop_after_secs: with ``poll_secs``, stop ticking this long after the start (tests,
            bounded reruns); None: never.
        token_file: a file holding a bearer token for ``Authorization``.
        state_file: keep the cursor in this file between bounded runs.
        retry: backoff for transient failures.
    """

    def __init__(
        self,
        spec: RestApiSpec,
        poll_secs: float | None = None,
        stop_after_secs: float | None = None,
        token_file: str | None = None,
        state_file: str | None = None,
        retry: RetryPolicy | None = None,
    ):
        super().__init__()
        if poll_secs is not None and not poll_secs > 0:
            raise ValueError(f'poll_secs must be > 0, got {poll_secs}')
        if stop_after_secs is not None and poll_secs is None:
            raise ValueError('stop_after_secs needs poll_secs')
        self._spec = spec
        self._poll_secs = poll_secs
        self._stop_after_secs = stop_after_secs
        self._fn = _PollFn(spec, token_file, state_file, retry or RetryPolicy())

    def expand(self, pbegin) -> RestRead:
        if self._poll_secs is None:
            ticks = pbegin | 'Once' >> beam.Impulse()
        else:
            # Whole microseconds (Beam's Timestamp arithmetic): with floats, the stop could land a
            # microsecond past a tick and let one more poll through.
            start = Timestamp.now()
            stop = start + Duration(self._stop_after_secs) if self._stop_after_secs else None
            ticks = pbegin | 'Every' >> PeriodicImpulse(
                start_timestamp=start,
                fire_interval=self._poll_secs,
                **({'stop_timestamp': stop} if stop else {}),
            )
        results = (
            ticks
            | 'KeyByApi'
            >> beam.Map(lambda _, name: (name, None), self._spec.name).with_output_types(
                tuple[str, None]
            )
            | 'Poll'
            >> beam.ParDo(self._fn).with_output_types(RawBatch).with_outputs(STATE, main='batches')
        )
        return RestRead(batches=results.batches, state=results[STATE])


class _PollFn(beam.DoFn):
    CURSOR = ReadModifyWriteStateSpec('cursor', PickleCoder())

    def __init__(self, spec, token_file, state_file, retry):
        self._spec = spec
        self._token_file = token_file
        self._state_file = state_file
        self._retry = retry

    def setup(self):
        self._session = requests.Session()
        self._session.headers['Accept'] = 'application/json'
        if self._token_file:
            with FileSystems.open(self._token_file) as f:
                token = f.read().decode('utf-8').strip()
            self._session.headers['Authorization'] = f'Bearer {token}'
        self._poller = RestPoller(self._spec, self._session, self._retry)
        self._records = Metrics.counter(NAMESPACE, 'rest_api_records')
        self._requests = Metrics.counter(NAMESPACE, 'rest_api_requests')

    def teardown(self):
        self._session.close()

    def process(self, element, cursor_state=beam.DoFn.StateParam(CURSOR)):
        cursor = cursor_state.read() or load_cursor(self._state_file)
        base = (time.time_ns() // 1_000_000) << _SEQ_BITS
        index, before = 0, self._poller.requests
        for lines, after in self._poller.poll(cursor):
            cursor = after  # kept once the page is out
            if lines:
                positions = list(range(base + index, base + index + len(lines)))
                index += len(lines)
                self._records.inc(len(lines))
                yield RawBatch(self._spec.name, 'jsonl', positions, lines=lines)
        self._requests.inc(self._poller.requests - before)
        cursor_state.write(cursor)
        if self._state_file is not None:
            pending = f'{self._state_file}.pending-{base}'
            with FileSystems.create(pending) as f:
                f.write(cursor.to_json())
            yield pvalue.TaggedOutput(STATE, (pending, self._state_file))
