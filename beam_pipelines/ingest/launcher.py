"""``python -m beam_pipelines.ingest serve|mqtt``: the front doors that feed the Redis stream.

::

    # HTTP webhooks (secrets: one per line; several at once while rotating)
    python -m beam_pipelines.ingest serve --port 8080 --secret_file secrets.txt \\
        --redis_url redis://127.0.0.1:6379/0 --stream_name events --high_water 1000000

    # IoT devices over MQTT
    python -m beam_pipelines.ingest mqtt --mqtt_url mqtt://127.0.0.1:1883 \\
        --topic 'devices/+/telemetry' --topic_fields 'devices/{entity_id}/telemetry' \\
        --redis_url redis://127.0.0.1:6379/0 --stream_name events

The pipeline then reads the stream: ``python -m beam_pipelines.event_analytics --source
redis_stream --redis_url ... --stream_name events ...``.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading

from beam_pipelines import cli
from beam_pipelines.ingest.auth import MODES
from beam_pipelines.ingest.auth import SECRETS_ENV
from beam_pipelines.ingest.auth import AllowAll
from beam_pipelines.ingest.auth import Authenticator
from beam_pipelines.ingest.auth import load_secrets
from beam_pipelines.ingest.payloads import PayloadLimits
from beam_pipelines.redaction import redact

__all__ = ['run']

_LOGGER = logging.getLogger(__name__)
PROG = 'beam_pipelines.ingest'


def _parser() -> argparse.ArgumentParser:
    parser = cli.ArgumentParser(prog=f'python -m {PROG}', allow_abbrev=False)
    commands = parser.add_subparsers(dest='command', required=True, parser_class=cli.ArgumentParser)
    serve = commands.add_parser('serve', help='HTTP ingestion service (webhooks).')
    bridge = commands.add_parser('mqtt', help='MQTT to Redis stream bridge.')
    for p in (serve, bridge):
        p.add_argument(
            '--redis_url',
            default=os.environ.get('REDIS_URL', 'redis://127.0.0.1:6379/0'),
            help='Redis holding the stream (default $REDIS_URL or redis://127.0.0.1:6379/0).',
        )
        p.add_argument('--stream_name', required=True, help='The Redis stream to append to.')
        p.add_argument(
            '--consumer_group',
            default='beam_pipelines',
            help="The pipeline's consumer group, whose backlog is watched.",
        )
        p.add_argument(
            '--high_water',
            type=int,
            default=1_000_000,
            help='Backlog (entries not acknowledged by the pipeline) above which producers are '
            'pushed back.',
        )
    serve.add_argument('--host', default='127.0.0.1', help='Address to listen on.')
    serve.add_argument('--port', type=int, default=8080, help='Port to listen on.')
    serve.add_argument(
        '--secret_file',
        default=None,
        help=f'Shared secrets, one per line (default: ${SECRETS_ENV}, comma-separated).',
    )
    serve.add_argument(
        '--auth',
        choices=MODES,
        default='any',
        help='token: Authorization: Bearer; hmac: signed bodies (X-Signature); any: either.',
    )
    serve.add_argument(
        '--signature_tolerance_secs',
        type=float,
        default=300.0,
        help='How far a signature timestamp may be from the server clock.',
    )
    serve.add_argument(
        '--insecure_no_auth',
        action='store_true',
        help='Accept requests without credentials (local development only).',
    )
    serve.add_argument(
        '--max_body_bytes', type=int, default=8 * 1024 * 1024, help='Largest request body.'
    )
    serve.add_argument(
        '--max_batch_events', type=int, default=10_000, help='Most events in one request.'
    )
    serve.add_argument(
        '--max_event_bytes', type=int, default=256 * 1024, help='Largest single event.'
    )
    serve.add_argument(
        '--rate_limit_eps',
        type=float,
        default=None,
        help='Events per second per client (default: no limit).',
    )
    serve.add_argument(
        '--rate_limit_burst',
        type=float,
        default=None,
        help='Most events a client may send at once (default: a second of --rate_limit_eps, '
        'at least --max_batch_events).',
    )
    serve.add_argument(
        '--client_header',
        default=None,
        help='Header naming the client for rate limits (X-Forwarded-For behind a trusted '
        'proxy); default: the peer address.',
    )
    serve.add_argument(
        '--retry_after_secs',
        type=int,
        default=1,
        help='Retry-After of backpressure and unavailability answers.',
    )
    bridge.add_argument(
        '--mqtt_url',
        default='mqtt://127.0.0.1:1883',
        help='mqtt://[user:password@]host[:port] (mqtts:// for TLS).',
    )
    bridge.add_argument(
        '--topic',
        action='append',
        required=True,
        help='Topic filter to subscribe to (repeat for several).',
    )
    bridge.add_argument(
        '--client_id',
        default='beam_pipelines_bridge',
        help='MQTT client id: the same id resumes the same persistent session.',
    )
    bridge.add_argument(
        '--topic_fields',
        default=None,
        help='Fill fields from topic levels into JSON payloads lacking them, e.g. '
        "'devices/{entity_id}/{event_type}'.",
    )
    bridge.add_argument(
        '--batch_size', type=int, default=1000, help='Most messages appended in one round trip.'
    )
    return parser


def run(argv: list[str] | None = None) -> int:
    """Parses the command line and runs the service or the bridge until stopped."""
    args = _parser().parse_args(list(sys.argv[1:] if argv is None else argv))
    if args.high_water < 1:
        raise cli.UsageError(f'--high_water must be >= 1, got {args.high_water}')
    if args.command == 'serve':
        return _serve(args)
    return _bridge(args)


def _serve(args) -> int:
    # Imported here: the bridge does not need the web framework.
    from aiohttp import web

    from beam_pipelines.ingest.service import ServiceConfig
    from beam_pipelines.ingest.service import make_app

    auth = _authenticator(args)
    try:
        config = ServiceConfig(
            redis_url=args.redis_url,
            stream_name=args.stream_name,
            consumer_group=args.consumer_group,
            high_water=args.high_water,
            max_body_bytes=args.max_body_bytes,
            limits=PayloadLimits(args.max_batch_events, args.max_event_bytes),
            rate_limit_eps=args.rate_limit_eps,
            rate_limit_burst=args.rate_limit_burst,
            retry_after_secs=args.retry_after_secs,
            client_header=args.client_header,
        )
    except ValueError as exc:
        raise cli.UsageError(str(exc)) from None
    _LOGGER.info(
        'serving on %s:%d -> %s stream %s (auth: %s)',
        args.host,
        args.port,
        redact(args.redis_url),
        args.stream_name,
        auth.mode,
    )
    web.run_app(
        make_app(config, auth),
        host=args.host,
        port=args.port,
        access_log=None,
        print=None,
        shutdown_timeout=10.0,
    )
    return 0


def _authenticator(args):
    if args.insecure_no_auth:
        _LOGGER.warning('authentication is off (--insecure_no_auth)')
        return AllowAll()
    try:
        secrets = load_secrets(args.secret_file)
        return Authenticator(secrets, args.auth, args.signature_tolerance_secs)
    except (OSError, ValueError) as exc:
        raise cli.UsageError(
            f'{exc}: give --secret_file or ${SECRETS_ENV} (or --insecure_no_auth for local '
            'development)'
        ) from None


def _bridge(args) -> int:
    from beam_pipelines.ingest.mqtt_bridge import BrokerAddress
    from beam_pipelines.ingest.mqtt_bridge import MqttBridge
    from beam_pipelines.ingest.mqtt_bridge import TopicFields
    from beam_pipelines.io.stream_append import StreamAppender

    try:
        broker = BrokerAddress.from_url(args.mqtt_url)
        fields = TopicFields(args.topic_fields) if args.topic_fields else None
        appender = StreamAppender(
            args.redis_url, args.stream_name, args.consumer_group, args.high_water
        )
        bridge = MqttBridge(
            appender,
            broker,
            args.topic,
            client_id=args.client_id,
            topic_fields=fields,
            batch_size=args.batch_size,
        )
    except ValueError as exc:
        raise cli.UsageError(str(exc)) from None
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    _LOGGER.info(
        'bridging %s %s -> %s stream %s',
        redact(args.mqtt_url),
        ' '.join(args.topic),
        redact(args.redis_url),
        args.stream_name,
    )
    try:
        bridge.run(stop)
    finally:
        appender.close()
    _LOGGER.info('bridge stopped after %d messages', bridge.appended)
    return 0
