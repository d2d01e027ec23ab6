"""End-to-end latency of the local continuous mode: event appended to a Redis stream -> its
window's pane visible in Redis.

A producer appends events at ``--rate`` per second (current event times, ``--entities`` keys)
to a fresh stream; the flagship runs as a subprocess with ``--source redis_stream --state_dir
... --every ...`` and early panes, writing panes to Redis; a monitor polls the series data in
Redis and records when the count of events visible there passes each appended batch. Every run
reads the stream up to its end, so the visible events are always a prefix of the appended ones,
and an event's latency is the time from its append to the first poll that shows that many.

    python -m beam_pipelines.bench_latency --rate 10000 --seconds 30 --every 1s
"""

from __future__ import annotations

import argparse
import json
import os
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


def produce(client, stream, rate, seconds, entities, appended, stop):
    """Appends ``rate`` events per second in 10 chunks a second; records (count, time)."""
    chunk = max(1, rate // 10)
    sent = 0
    start = time.monotonic()
    tick = 0
    while time.monotonic() - start < seconds and not stop.is_set():
        now = time.time()
        pipe = client.pipeline(transaction=False)
        for i in range(chunk):
            n = sent + i
            event = {
                'event_id': f'e{n}',
                'event_type': 'click',
                'entity_id': f'u{n % entities}',
                'timestamp': now,
                'value': float(n % 97),
            }
            pipe.xadd(stream, {'event': orjson.dumps(event)})
        pipe.execute()
        sent += chunk
        appended.append((sent, time.monotonic()))
        tick += 1
        delay = start + tick / 10 - time.monotonic()
        if delay > 0:
            time.sleep(delay)


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
    try:
        watcher.start()
        produce(client, stream, args.rate, args.seconds, args.entities, appended, stop)
        total = appended[-1][0] if appended else 0
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and (not seen or seen[-1][0] < total):
            if proc.poll() is not None:
                break
            time.sleep(0.2)
    finally:
        stop.set()
        watcher.join()
        proc.terminate()
        proc.wait(timeout=30)
        log.close()
        keys = [*client.scan_iter(f'{layout.prefix}*'), stream]
        client.delete(*keys)
    lat = latencies(appended, seen)
    with open(os.path.join(work, 'flagship.log')) as f:
        runs = f.read().count('event_analytics: read')
    print(
        f'bench_latency: {total:,} events appended at {args.rate:,}/s for {args.seconds:g} s, '
        f'{runs} runs (--every {args.every}); {seen[-1][0] if seen else 0:,} visible in Redis'
    )
    if len(lat) == 0:
        print('bench_latency: nothing became visible; see ' + os.path.join(work, 'flagship.log'))
        return 1
    print(
        f'  append -> visible in Redis: p50 {np.percentile(lat, 50):.2f} s, '
        f'p95 {np.percentile(lat, 95):.2f} s, max {lat.max():.2f} s '
        f'({len(lat)} of {len(appended)} chunks seen)'
    )
    return 0


if __name__ == '__main__':
    sys.exit(main())
