"""The MQTT bridge against the real Mosquitto broker and Redis server (never mocked).

The broker comes from ``BEAM_PIPELINES_TEST_MQTT_URL`` (default mqtt://127.0.0.1:1883). Each
test uses its own topic prefix, client ids and stream. Without a broker the tests skip, except
under CI, where they fail.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import threading
import time
import uuid

import orjson
import paho.mqtt.client as mqtt
import pytest

from beam_pipelines import event_analytics
from beam_pipelines.ingest.mqtt_bridge import BrokerAddress
from beam_pipelines.ingest.mqtt_bridge import MqttBridge
from beam_pipelines.ingest.mqtt_bridge import TopicFields
from beam_pipelines.io.stream_append import FIELD
from beam_pipelines.io.stream_append import StreamAppender
from tests.conftest import service_unavailable
from tests.io.test_redis import REDIS_URL
from tests.io.test_redis import client  # noqa: F401  (fixture)
from tests.io.test_redis import prefix  # noqa: F401  (fixture)

MQTT_URL = os.environ.get('BEAM_PIPELINES_TEST_MQTT_URL', 'mqtt://127.0.0.1:1883')
BROKER = BrokerAddress.from_url(MQTT_URL)


@pytest.fixture(scope='module')
def broker():
    try:
        socket.create_connection((BROKER.host, BROKER.port), timeout=2).close()
    except OSError as exc:
        service_unavailable(f'an MQTT broker at {MQTT_URL}', exc)
    return BROKER


@pytest.fixture
def names(broker):
    """A topic root and a client id of the test's own; its session is removed after."""
    tag = uuid.uuid4().hex[:10]
    yield f'test/{tag}', f'bridge-{tag}'
    # A clean-session connection with the same id discards the persistent session.
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f'bridge-{tag}', clean_session=True)
    c.connect(broker.host, broker.port)
    c.disconnect()


def publish(topic_payloads: list[tuple[str, bytes]]) -> None:
    """Publishes with QoS 1 and waits for the broker to have every message."""
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f'pub-{uuid.uuid4().hex[:8]}')
    c.connect(BROKER.host, BROKER.port)
    c.loop_start()
    try:
        infos = [c.publish(t, p, qos=1) for t, p in topic_payloads]
        for info in infos:
            info.wait_for_publish(timeout=10)
    finally:
        c.disconnect()
        c.loop_stop()


@contextlib.contextmanager
def bridging(appender, root, client_id, **kwargs):
    """A bridge on ``{root}/#`` running in a thread; stopped (and joined) on exit."""
    bridge = MqttBridge(appender, BROKER, [f'{root}/#'], client_id=client_id, **kwargs)
    stop = threading.Event()
    failures = []

    def target():
        try:
            bridge.run(stop)
        except Exception as exc:  # surfaced to the test below
            failures.append(exc)

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    try:
        assert bridge.wait_connected(10), 'the bridge did not subscribe'
        yield bridge, failures
    finally:
        stop.set()
        thread.join(timeout=30)


def wait_for(predicate, timeout_secs=15.0) -> bool:
    deadline = time.monotonic() + timeout_secs
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


def event(i: int, **fields) -> bytes:
    return orjson.dumps({'event_id': f'e{i}', 'timestamp': 1_714_521_600 + i, 'value': i, **fields})


def test_topic_fields_fill_only_what_the_payload_lacks():
    fields = TopicFields('devices/{entity_id}/{event_type}')
    assert fields.fields('devices/d7/reading') == {'entity_id': 'd7', 'event_type': 'reading'}
    assert fields.fields('devices/d7') is None and fields.fields('other/d7/x') is None
    filled = orjson.loads(fields.fill('devices/d7/reading', b'{"entity_id": "", "value": 1}'))
    assert filled == {'entity_id': 'd7', 'value': 1, 'event_type': 'reading'}
    kept = b'{"entity_id":"mine","event_type":"x"}'
    assert fields.fill('devices/d7/reading', kept) == kept
    assert fields.fill('devices/d7/reading', b'23.5,C') == b'23.5,C'  # not JSON: unchanged
    assert TopicFields('+/{entity_id}').fields('any/d1') == {'entity_id': 'd1'}
    with pytest.raises(ValueError):
        TopicFields('devices/+/events')


def test_broker_urls():
    assert BrokerAddress.from_url('mqtt://u:p%40ss@h') == BrokerAddress('h', 1883, 'u', 'p@ss')
    assert BrokerAddress.from_url('mqtts://h:9000').tls
    with pytest.raises(ValueError, match=r'mqtt://'):
        BrokerAddress.from_url('http://u:secret@h')


def test_messages_reach_the_stream_with_their_topic(client, prefix, names):  # noqa: F811
    root, client_id = names
    stream = f'{prefix}events'
    appender = StreamAppender(REDIS_URL, stream)
    fields = TopicFields(f'{root}/{{entity_id}}/telemetry')
    with bridging(appender, root, client_id, topic_fields=fields):
        publish([(f'{root}/d{i % 3}/telemetry', event(i)) for i in range(50)])
        assert wait_for(lambda: client.xlen(stream) == 50)
    entries = client.xrange(stream)
    by_id = {orjson.loads(f[FIELD])['event_id']: f for _, f in entries}
    assert sorted(by_id) == sorted(f'e{i}' for i in range(50))
    first = by_id['e4']
    assert first[b'topic'] == f'{root}/d1/telemetry'.encode()
    assert orjson.loads(first[FIELD])['entity_id'] == 'd1'


def test_messages_sent_while_the_bridge_is_down_arrive_later(client, prefix, names):  # noqa: F811
    root, client_id = names
    stream = f'{prefix}events'
    appender = StreamAppender(REDIS_URL, stream)
    with bridging(appender, root, client_id):
        pass  # subscribes: the broker now keeps a session for this client id
    publish([(f'{root}/d/telemetry', event(i)) for i in range(20)])
    assert client.xlen(stream) == 0
    with bridging(appender, root, client_id):
        assert wait_for(lambda: client.xlen(stream) == 20)


def test_nothing_is_acknowledged_before_it_is_in_the_stream(client, prefix, names):  # noqa: F811
    root, client_id = names
    stream = f'{prefix}events'
    broken = StreamAppender('redis://127.0.0.1:1/0', stream)  # no Redis there
    with bridging(broken, root, client_id) as (_, failures):
        publish([(f'{root}/d/telemetry', event(i)) for i in range(10)])
        assert wait_for(lambda: failures, 30), 'the append should have failed'
    # The bridge died without acknowledging: the broker delivers everything again.
    with bridging(StreamAppender(REDIS_URL, stream), root, client_id):
        assert wait_for(lambda: client.xlen(stream) == 10)


def test_backpressure_holds_messages_at_the_broker(client, prefix, names):  # noqa: F811
    root, client_id = names
    stream = f'{prefix}events'
    client.xgroup_create(stream, 'pipeline', id='0', mkstream=True)
    appender = StreamAppender(REDIS_URL, stream, 'pipeline', high_water=5)
    with bridging(appender, root, client_id, batch_size=6, backpressure_check_secs=0.05):
        publish([(f'{root}/d/telemetry', event(i)) for i in range(6)])
        assert wait_for(lambda: client.xlen(stream) == 6)
        # The backlog is read at most every check interval (a soft mark: it may be overshot by
        # one interval of traffic); let the last reading, from before the append, expire.
        time.sleep(0.2)
        publish([(f'{root}/d/telemetry', event(i)) for i in range(6, 12)])
        time.sleep(1.0)
        assert client.xlen(stream) == 6  # behind by 6 > 5: held back
        read = client.xreadgroup('pipeline', 'c', {stream: '>'})
        client.xack(stream, 'pipeline', *[i for i, _ in read[0][1]])
        assert wait_for(lambda: client.xlen(stream) == 12)


@pytest.mark.e2e
def test_device_messages_through_the_flagship(tmp_path, client, prefix, names):  # noqa: F811
    root, client_id = names
    stream = f'{prefix}events'
    fields = TopicFields(f'{root}/{{entity_id}}/{{event_type}}')
    messages = [(f'{root}/d{i % 4}/reading', event(i)) for i in range(200)]
    # A retransmission (same device, same event) and a payload that is not JSON.
    messages += [(f'{root}/d3/reading', event(7)), (f'{root}/d1/reading', b'not json')]
    with bridging(StreamAppender(REDIS_URL, stream), root, client_id, topic_fields=fields):
        publish(messages)
        assert wait_for(lambda: client.xlen(stream) == len(messages))
    out = tmp_path / 'out'
    argv = ['--source', 'redis_stream', '--redis_url', REDIS_URL, '--stream_name', stream]
    argv += ['--stop_at_end', '--output_dir', str(out), '--redis_prefix', prefix]
    assert event_analytics.run(argv) == 0
    counts = json.loads((out / 'run_summary.json').read_text())['counts']
    assert (counts['read'], counts['valid'], counts['duplicates'], counts['dead_letter']) == (
        202,
        200,
        1,
        1,
    )


@pytest.mark.parametrize('qos', [0, 2])
def test_only_qos_1_is_at_least_once(qos):
    # QoS 2 is acknowledged by the client library on arrival (PUBREC), QoS 0 never.
    with pytest.raises(ValueError, match='qos must be 1'):
        MqttBridge(StreamAppender(REDIS_URL, 's'), BROKER, ['t/#'], qos=qos)
