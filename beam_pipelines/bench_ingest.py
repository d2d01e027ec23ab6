"""Throughput of the HTTP ingestion service: events/s accepted, and request latency.

Starts ``python -m beam_pipelines.ingest serve`` on a free port against Redis, then drives it
from this process with ``--concurrency`` asyncio clients for ``--seconds`` per case: single
events (``POST /v1/events``) and batches (``POST /v1/events/batch``, JSON Lines). Each
accepted request is in the stream when answered. The stream is deleted afterwards. The load
generator shares the machine's cores with the service and Redis.

    python -m beam_pipelines.bench_ingest --seconds 10 --concurrency 32 --batch 100
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import subprocess
import sys
import time
import uuid

import aiohttp
import numpy as np
import orjson
import redis

DEFAULT_REDIS_URL = os.environ.get('BEAM_PIPELINES_TEST_REDIS_URL', 'redis://127.0.0.1:6379/0')


def _event(n: int) -> bytes:
    return orjson.dumps(
        {
            'event_id': f'e{n}',
            'event_type': 'click',
            'entity_id': f'u{n % 1000}',
            'timestamp': time.time(),
            'value': float(n % 97),
        }
    )


async def _drive(url, headers, seconds, concurrency, batch):
    """Posts for ``seconds``; returns (accepted events, request latencies, refusals)."""
    latencies, accepted, refused = [], 0, 0
    counter = iter(range(10**12))
    deadline = time.monotonic() + seconds

    async def client(session):
        nonlocal accepted, refused
        while time.monotonic() < deadline:
            if batch == 1:
                path, body, extra = '/v1/events', _event(next(counter)), {}
            else:
                lines = b'\n'.join(_event(next(counter)) for _ in range(batch))
                path, body = '/v1/events/batch', lines
                extra = {'Content-Type': 'application/x-ndjson'}
            started = time.perf_counter()
            async with session.post(url + path, data=body, headers=extra) as response:
                await response.read()
                if response.status == 202:
                    accepted += batch
                    latencies.append(time.perf_counter() - started)
                else:
                    refused += 1

    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(headers=headers, connector=connector) as session:
        await asyncio.gather(*(client(session) for _ in range(concurrency)))
    return accepted, np.array(latencies), refused


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog='bench_ingest', description=__doc__.split('\n')[0])
    parser.add_argument('--seconds', type=float, default=10.0)
    parser.add_argument('--concurrency', type=int, default=32)
    parser.add_argument('--batch', type=int, default=100)
    parser.add_argument('--redis_url', default=DEFAULT_REDIS_URL)
    args = parser.parse_args(argv)

    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        port = s.getsockname()[1]
    stream, secret = f'bench:ingest:{uuid.uuid4().hex[:8]}', uuid.uuid4().hex
    env = {**os.environ, 'BEAM_PIPELINES_INGEST_SECRETS': secret}
    argv = [sys.executable, '-m', 'beam_pipelines.ingest', 'serve', f'--port={port}']
    argv += [f'--redis_url={args.redis_url}', f'--stream_name={stream}']
    argv += ['--high_water=100000000']
    server = subprocess.Popen(argv, env=env, stderr=subprocess.DEVNULL)
    client = redis.Redis.from_url(args.redis_url)
    url = f'http://127.0.0.1:{port}'
    headers = {'Authorization': f'Bearer {secret}'}
    try:
        deadline = time.monotonic() + 30
        while socket.socket().connect_ex(('127.0.0.1', port)) != 0:
            if time.monotonic() > deadline or server.poll() is not None:
                print('bench_ingest: the service did not start', file=sys.stderr)
                return 1
            time.sleep(0.1)
        print(
            f'bench_ingest: {args.concurrency} concurrent clients, {args.seconds:g} s per case, '
            'one service process'
        )
        for batch in (1, args.batch):
            before = client.xlen(stream)
            accepted, lat, refused = asyncio.run(
                _drive(url, headers, args.seconds, args.concurrency, batch)
            )
            appended = client.xlen(stream) - before
            assert appended == accepted, (appended, accepted)  # answered 202 = in the stream
            what = 'single events' if batch == 1 else f'batches of {batch}'
            print(
                f'  {what:>16}: {accepted / args.seconds:>9,.0f} events/s '
                f'({len(lat) / args.seconds:,.0f} requests/s), request p50 '
                f'{np.percentile(lat, 50) * 1000:.1f} ms, p99 {np.percentile(lat, 99) * 1000:.1f} '
                f'ms, refused {refused}'
            )
    finally:
        server.terminate()
        server.wait(timeout=30)
        client.delete(stream)
        client.close()
    return 0


if __name__ == '__main__':
    sys.exit(main())
