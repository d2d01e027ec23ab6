"""End-to-end latency of the local continuous mode: event sent -> its window's pane visible in
Redis.

A producer sends events (current event times, ``--entities`` keys) at ``--rate`` per second to
a fresh stream, either straight to Redis (``--via redis``) or as JSON Lines batches POSTed to
the HTTP ingestion service (``--via http``, started here). The flagship runs as a subprocess
with ``--source redis_stream --state_dir ... --every ...`` and early panes, writing panes to
Redis; a monitor polls the series data in Redis and records when the count of events visible
there passes each sent batch. Every run reads the stream up to its end, so the visible events
are always a prefix of the sent ones, and an event's latency is the time from its sending to
the first poll that shows that many. Sending starts once the flagship has finished a first
(empty) run: its start-up is paid once, not per event.

    python -m beam_pipelines.bench_latency --rate 10000 --seconds 30 --every 1s [--via http]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid

import numpy as np
import orjson
import redis

from beam_pipelines.io.redis_sink import RedisLayout

DEFAULT_REDIS_URL = os.environ.get('BEAM_PIPELINES_TEST_REDIS_URL', 'redis://127.0.0.1:6379/0')


def produce(send, rate, seconds, entities, appended, stop):
    """Sends ``rate`` events per second in 10 chunks a second through ``send(events)``; records
    (count sent so far, time the chunk was sent)."""
    chunk = max(1, rate // 10)
    sent = 0
    start = time.monotonic()
    tick = 0
    while time.monotonic() - start < seconds and not stop.is_set():
        now = time.time()
        events = [
            orjson.dumps(
                {
                    'event_id': f'e{n}',
                    'event_type': 'click',
                    'entity_id': f'u{n % entities}',
                    'timestamp': now,
                    'value': float(n % 97),
                }
            )
            for n in range(sent, sent + chunk)
        ]
        at = time.monotonic()
        send(events)
        sent += chunk
        appended.append((sent, at))
        tick += 1
        delay = start + tick / 10 - time.monotonic()
        if delay > 0:
            time.sleep(delay)


def _stream_sender(client, stream):
    def send(events):
        pipe = client.pipeline(transaction=False)
        for event in events:
            pipe.xadd(stream, {'event': event})
        pipe.execute()

    return send


def _ingest_service(redis_url, stream, log):
    """Starts ``python -m beam_pipelines.ingest serve`` on a free port; returns it and a sender
    that POSTs each chunk as one JSON Lines batch (and checks it was accepted)."""
    import requests

    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        port = s.getsockname()[1]
    secret = uuid.uuid4().hex
    env = {**os.environ, 'BEAM_PIPELINES_INGEST_SECRETS': secret}
    argv = [sys.executable, '-m', 'beam_pipelines.ingest', 'serve', f'--port={port}']
    argv += [f'--redis_url={redis_url}', f'--stream_name={stream}']
    proc = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT)
    session = requests.Session()
    session.headers.update(
        {'Authorization': f'Bearer {secret}', 'Content-Type': 'application/x-ndjson'}
    )
    url = f'http://127.0.0.1:{port}/v1/events/batch'
    deadline = time.monotonic() + 30
    while True:
        try:
            session.get(f'http://127.0.0.1:{port}/health', timeout=1)
            break
        except requests.ConnectionError:
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError('the ingestion service did not start') from None
            time.sleep(0.1)

    def send(events):
        response = session.post(url, data=b'\n'.join(events), timeout=30)
        if response.status_code != 202:
            raise RuntimeError(f'ingestion refused a batch: {response.status_code} {response.text}')

    return proc, send


def _wait_for_first_run(log_path, proc, timeout_secs=120.0):
    """Steady state only: the flagship's start (imports, building and translating the pipeline)
    is paid once, not per event, so events are sent after its first run has ended."""
    deadline = time.monotonic() + timeout_secs
    while time.monotonic() < deadline and proc.poll() is None:
        with open(log_path) as f:
            if 'event_analytics: read' in f.read():
                return
        time.sleep(0.1)
    raise RuntimeError(f'the flagship did not finish a first run; see {log_path}')


def visible_count(client, layout, entities) -> int:
    pipe = client.pipeline(transaction=False)
    for e in range(entities):
        pipe.hvals(layout.series_data(f'u{e}', 'click'))
    total = 0
    for values in pipe.execute():
        total += sum(json.loads(v)['count'] for v in values)
    return total


def monitor(client, layout, entities, seen, stop):
    while not stop.is_set():
        seen.append((visible_count(client, layout, entities), time.monotonic()))
        time.sleep(0.05)


def latencies(appended, seen) -> np.ndarray:
    """Per appended chunk: time from its append to the first poll showing it (s)."""
    counts = np.array([c for c, _ in seen])
    times = np.array([t for _, t in seen])
    out = []
    for count, at in appended:
        idx = np.flatnonzero((counts >= count) & (times >= at))
        if len(idx):
            out.append(times[idx[0]] - at)
    return np.array(out)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog='bench_latency', description=__doc__.split('\n')[0])
    parser.add_argument('--rate', type=int, default=10_000)
    parser.add_argument('--seconds', type=float, default=30.0)
    parser.add_argument('--every', default='1s')
    parser.add_argument('--entities', type=int, default=100)
    parser.add_argument('--redis_url', default=DEFAULT_REDIS_URL)
    parser.add_argument('--num_shards', type=int, default=2)
    parser.add_argument(
        '--via',
        choices=('redis', 'http'),
        default='redis',
        help='redis: XADD to the stream; http: POST batches to the ingestion service',
    )
    args = parser.parse_args(argv)

    client = redis.Redis.from_url(args.redis_url)
    tag = uuid.uuid4().hex[:8]
    stream, layout = f'bench:stream:{tag}', RedisLayout(prefix=f'bench:{tag}:')
    work = tempfile.mkdtemp(prefix='bench_latency_')
    flagship = [
        sys.executable,
        '-m',
        'beam_pipelines.event_analytics',
        '--source=redis_stream',
        f'--redis_url={args.redis_url}',
        f'--stream_name={stream}',
        f'--redis_prefix={layout.prefix}',
        f'--state_dir={work}/state',
        f'--output_dir={work}/out',
        f'--every={args.every}',
        '--early_firing_secs=1',
        f'--num_shards={args.num_shards}',
        '--window_size_secs=60',
    ]
    appended, seen, stop = [], [], threading.Event()
    log = open(os.path.join(work, 'flagship.log'), 'w')  # noqa: SIM115  (closed in finally)
    proc = subprocess.Popen(flagship, stdout=log, stderr=subprocess.STDOUT)
    watcher = threading.Thread(target=monitor, args=(client, layout, args.entities, seen, stop))
    ingest = None
    try:
        if args.via == 'http':
            ingest, send = _ingest_service(args.redis_url, stream, log)
        else:
            send = _stream_sender(client, stream)
        _wait_for_first_run(os.path.join(work, 'flagship.log'), proc)
        watcher.start()
        produce(send, args.rate, args.seconds, args.entities, appended, stop)
        total = appended[-1][0] if appended else 0
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and (not seen or seen[-1][0] < total):
            if proc.poll() is not None:
                break
            time.sleep(0.2)
    finally:
        stop.set()
        watcher.join()
        for p in (proc, ingest):
            if p is not None:
                p.terminate()
                p.wait(timeout=30)
        log.close()
        keys = [*client.scan_iter(f'{layout.prefix}*'), stream]
        client.delete(*keys)
    lat = latencies(appended, seen)
    with open(os.path.join(work, 'flagship.log')) as f:
        runs = f.read().count('event_analytics: read') - 1  # the warm-up run
    print(
        f'bench_latency: {total:,} events sent ({args.via}) at {args.rate:,}/s for '
        f'{args.seconds:g} s, '
        f'{runs} runs (--every {args.every}); {seen[-1][0] if seen else 0:,} visible in Redis'
    )
    if len(lat) == 0:
        print('bench_latency: nothing became visible; see ' + os.path.join(work, 'flagship.log'))
        return 1
    print(
        f'  sent -> visible in Redis: p50 {np.percentile(lat, 50):.2f} s, '
        f'p95 {np.percentile(lat, 95):.2f} s, max {lat.max():.2f} s '
        f'({len(lat)} of {len(appended)} chunks seen)'
    )
    return 0


if __name__ == '__main__':
    sys.exit(main())
