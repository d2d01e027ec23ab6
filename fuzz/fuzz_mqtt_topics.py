"""Fuzz target: the MQTT bridge's topic fields (``ingest.mqtt_bridge.TopicFields.fill``).

Input: byte 0 picks the template, then up to 60 bytes of topic (after ``devices/``); the rest
is the message payload. Invariants: ``fuzz.ingest_invariants.check_topic_fill`` (nothing
raises; a payload that is not a JSON object passes unchanged; an object keeps its fields,
gains the topic's missing ones, and stays an object).

    python -m fuzz.fuzz_mqtt_topics CORPUS_DIR -max_total_time=60
"""

from __future__ import annotations

import sys

from fuzz.harness import FuzzInput
from fuzz.harness import instrumented_imports
from fuzz.harness import reported

with instrumented_imports():
    from fuzz import ingest_invariants as ingest

TEMPLATES = ('devices/{entity_id}/telemetry', 'devices/+/{event_type}', 'devices/{entity_id}')
SEEDS = [
    b'\x00\x0ed1/telemetry{"value":1}',
    b'\x01\x0cd1/Click{"event_type":"","a":[1]}',
    b'\x02\x02d1[1,2]',
    b'\x00\x0ed1/telemetry{"entity_id":null,"x":{"y":"z"}}',
    b'\x00\x0ed1/telemetry{"a":' + b'[' * 250 + b']' * 250 + b'}',  # near orjson's limit
]


def TestOneInput(data: bytes) -> None:
    given = FuzzInput(data)
    template = TEMPLATES[given.byte() % len(TEMPLATES)]
    topic = 'devices/' + given.bytes(60).decode('utf-8', 'replace')
    with reported():
        ingest.check_topic_fill(template, topic, given.rest())


def main() -> None:
    import atheris

    atheris.Setup(sys.argv, TestOneInput)
    atheris.Fuzz()


if __name__ == '__main__':
    main()
