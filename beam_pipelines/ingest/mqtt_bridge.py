"""The MQTT bridge: IoT device messages from an MQTT broker into the pipeline's Redis stream.

Subscribes to topic filters (``devices/+/telemetry``) with QoS 1 on a persistent session and
appends each message's payload to the stream as an entry (``event`` = payload, ``topic`` = the
topic), in batches. Delivery is at-least-once end to end:

* Subscriptions are QoS 1 (publishers must publish with QoS 1 too: QoS 0 is at-most-once by
  MQTT's definition). The session is persistent (``clean_session=False``, a fixed client id),
  so the broker queues messages while the bridge is down and delivers them when it is back, up
  to its queue limit (Mosquitto's ``max_queued_messages``, 1000 by default; beyond it Mosquitto
  drops new messages for the session: raise it for long outages).
* Messages are acknowledged to the broker (``PUBACK``, paho's ``manual_ack``) only after their
  batch is in the stream. A bridge that dies in between gets them again from the broker; the
  repeats are duplicates, which the pipeline drops by ``event_id``.
* Acknowledgements are tied to the connection that received the message: after a reconnect the
  broker redelivers what was not acknowledged, and a stale message id is never acknowledged on
  the new connection (ids are reused per connection, so that could acknowledge another message).
* Backpressure: while the pipeline's consumer group is behind by more than ``high_water``
  entries, the bridge stops appending and acknowledging; the broker stops sending once its
  in-flight window is full and queues the rest (within the same queue limit).

Devices often name themselves in the topic rather than the payload: ``topic_fields`` (e.g.
``devices/{entity_id}/{event_type}``) fills those fields into JSON object payloads that lack
them. Other payloads pass unchanged (CSV or Avro with ``--wire_format`` on the pipeline; anything
undecodable becomes a dead letter there, not here).
"""

from __future__ import annotations

import dataclasses
import logging
import queue
import threading
import time
import urllib.parse

import orjson
import paho.mqtt.client as mqtt

from beam_pipelines.io.stream_append import StreamAppender
from beam_pipelines.redaction import redact

__all__ = ['BrokerAddress', 'MqttBridge', 'TopicFields']

_LOGGER = logging.getLogger(__name__)
TOPIC_FIELD = 'topic'


@dataclasses.dataclass(frozen=True)
class BrokerAddress:
    """An MQTT broker from ``mqtt://[user:password@]host[:port]`` (``mqtts://`` for TLS)."""

    host: str
    port: int
    username: str | None = None
    # Out of the dataclass's repr: an address in a log line or a traceback must not carry it.
    password: str | None = dataclasses.field(default=None, repr=False)
    tls: bool = False

    @classmethod
    def from_url(cls, url: str) -> BrokerAddress:
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ('mqtt', 'mqtts') or not parts.hostname:
            raise ValueError(
                f'an MQTT URL is mqtt://host:port or mqtts://host:port, got {redact(url)}'
            )
        tls = parts.scheme == 'mqtts'
        return cls(
            host=parts.hostname,
            port=parts.port or (8883 if tls else 1883),
            username=urllib.parse.unquote(parts.username) if parts.username else None,
            password=urllib.parse.unquote(parts.password) if parts.password else None,
            tls=tls,
        )


class TopicFields:
    """Fills fields named in a topic template into JSON payloads that lack them.

    Args:
        template: topic levels, ``{name}`` capturing a level (``devices/{entity_id}/events``);
            other levels must match exactly, ``+`` matches any level.
    """

    def __init__(self, template: str):
        self._levels = template.split('/')
        self._names = {
            i: level[1:-1]
            for i, level in enumerate(self._levels)
            if level.startswith('{') and level.endswith('}')
        }
        if not self._names or any(not n.isidentifier() for n in self._names.values()):
            raise ValueError(f'a topic template names fields as {{name}} levels, got {template!r}')

    def fields(self, topic: str) -> dict[str, str] | None:
        levels = topic.split('/')
        if len(levels) != len(self._levels):
            return None
        out = {}
        for i, (want, got) in enumerate(zip(self._levels, levels, strict=True)):
            if i in self._names:
                out[self._names[i]] = got
            elif want not in ('+', got):
                return None
        return out

    def fill(self, topic: str, payload: bytes) -> bytes:
        found = self.fields(topic)
        if not found:
            return payload
        try:
            event = orjson.loads(payload)
        except orjson.JSONDecodeError:
            return payload
        if not isinstance(event, dict):
            return payload
        missing = {k: v for k, v in found.items() if event.get(k) in (None, '')}
        if not missing:
            return payload
        try:
            return orjson.dumps({**event, **missing})
        except orjson.JSONEncodeError:
            # Nested deeper than orjson writes back (254 levels): the pipeline dead-letters
            # it (too_deeply_nested) whatever we add, so it goes on as received.
            return payload


@dataclasses.dataclass
class _Message:
    generation: int
    mid: int
    qos: int
    topic: str
    payload: bytes


class MqttBridge:
    """Bridges MQTT topics into a Redis stream (see the module docstring).

    Args:
        appender: the stream to append to.
        broker: the MQTT broker.
        topics: topic filters to subscribe to.
        client_id: the session's client id: the same id resumes the same persistent session.
        qos: subscription QoS: 1. QoS 2 is refused: paho answers PUBREC before the
            application sees the message, after which the broker only resends PUBREL, so a
            message not yet in the stream when the bridge dies would be lost.
        topic_fields: optional :class:`TopicFields`.
        batch_size: most messages appended in one round trip.
        flush_secs: how long the first message of a batch may wait for others.
        backpressure_check_secs: how often the backlog is read while appending.
    """

    def __init__(
        self,
        appender: StreamAppender,
        broker: BrokerAddress,
        topics: list[str],
        client_id: str = 'beam_pipelines_bridge',
        qos: int = 1,
        topic_fields: TopicFields | None = None,
        batch_size: int = 1000,
        flush_secs: float = 0.05,
        backpressure_check_secs: float = 0.5,
    ):
        if not topics:
            raise ValueError('topics must not be empty')
        if qos != 1:
            raise ValueError(
                f'qos must be 1 (acknowledged only once in the stream), got {qos}; QoS 2 is '
                'acknowledged by the client library on arrival, and QoS 0 never'
            )
        if not client_id:
            raise ValueError('client_id is required (it names the persistent session)')
        if batch_size < 1 or flush_secs <= 0:
            raise ValueError('batch_size must be >= 1 and flush_secs > 0')
        self._appender = appender
        self._broker = broker
        self._topics = list(topics)
        self._client_id = client_id
        self._qos = qos
        self._topic_fields = topic_fields
        self._batch_size = batch_size
        self._flush_secs = flush_secs
        self._check_secs = backpressure_check_secs
        self._inbox: queue.Queue[_Message] = queue.Queue()
        self._generation = 0
        self._lock = threading.Lock()  # the generation, and acks against it
        self._connected = threading.Event()
        self.appended = 0
        self._client = None

    def run(self, stop: threading.Event) -> None:
        """Connects and bridges until ``stop`` is set, then disconnects. Messages received but
        not yet appended are left unacknowledged: the broker delivers them again."""
        client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2,
            client_id=self._client_id,
            clean_session=False,
            manual_ack=True,
        )
        if self._broker.username:
            client.username_pw_set(self._broker.username, self._broker.password)
        if self._broker.tls:
            client.tls_set()
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        client.on_subscribe = self._on_subscribe
        client.reconnect_delay_set(min_delay=1, max_delay=30)
        self._client = client
        client.connect_async(self._broker.host, self._broker.port, keepalive=30)
        client.loop_start()
        try:
            checked_at, over = -1e9, False
            while not stop.is_set():
                batch = self._take_batch(stop)
                if not batch:
                    continue
                # Backpressure: hold (unacknowledged) while the pipeline is behind.
                while not stop.is_set():
                    if time.monotonic() - checked_at >= self._check_secs:
                        over, checked_at = self._appender.over_high_water(), time.monotonic()
                    if not over:
                        break
                    time.sleep(self._check_secs)
                if not over:
                    self._forward(batch)
        finally:
            client.disconnect()
            client.loop_stop()

    def wait_connected(self, timeout_secs: float = 10.0) -> bool:
        """Waits until the bridge is connected and subscribed."""
        return self._connected.wait(timeout_secs)

    def _take_batch(self, stop: threading.Event) -> list[_Message]:
        try:
            first = self._inbox.get(timeout=0.2)
        except queue.Empty:
            return []
        batch = [first]
        deadline = time.monotonic() + self._flush_secs
        while len(batch) < self._batch_size:
            left = deadline - time.monotonic()
            if left <= 0 or stop.is_set():
                break
            try:
                batch.append(self._inbox.get(timeout=left))
            except queue.Empty:
                break
        return batch

    def _forward(self, batch: list[_Message]) -> None:
        fill = self._topic_fields.fill if self._topic_fields else None
        payloads = [fill(m.topic, m.payload) if fill else m.payload for m in batch]
        # Raises on a Redis failure (after the client's retries): nothing is acknowledged, and
        # the broker redelivers after the restart.
        self._appender.append(payloads, [{TOPIC_FIELD: m.topic.encode()} for m in batch])
        self.appended += len(payloads)
        with self._lock:  # no reconnect between the check and the acks
            for m in batch:  # in the order received, as MQTT requires
                if m.generation == self._generation:
                    self._client.ack(m.mid, m.qos)

    def _on_connect(self, client, userdata, flags, reason_code, properties):
        if reason_code.is_failure:
            _LOGGER.warning('MQTT connection refused: %s', reason_code)
            return
        with self._lock:
            self._generation += 1
        client.subscribe([(t, self._qos) for t in self._topics])
        _LOGGER.info(
            'MQTT connected to %s:%d (session present: %s)',
            self._broker.host,
            self._broker.port,
            flags.session_present,
        )

    def _on_subscribe(self, client, userdata, mid, reason_codes, properties):
        if any(rc.is_failure for rc in reason_codes):
            _LOGGER.warning('MQTT subscription refused: %s', reason_codes)
            return
        self._connected.set()

    def _on_disconnect(self, client, userdata, flags, reason_code, properties):
        self._connected.clear()
        with self._lock:
            self._generation += 1  # what is held now was received on the old connection
        if reason_code.is_failure:
            _LOGGER.warning('MQTT connection lost (%s); reconnecting', reason_code)

    def _on_message(self, client, userdata, message):
        self._inbox.put(
            _Message(self._generation, message.mid, message.qos, message.topic, message.payload)
        )
