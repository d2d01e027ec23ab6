"""Front doors that feed the pipeline's Redis stream: an HTTP ingestion service and an MQTT bridge.

``python -m beam_pipelines.ingest serve`` (webhooks: :mod:`.service`) and ``python -m
beam_pipelines.ingest mqtt`` (IoT devices: :mod:`.mqtt_bridge`). The pieces that decide
(authentication, payload framing, rate limits) are plain Python with no web framework in them;
nothing here imports Beam, so the front doors start in a fraction of a second.
"""
