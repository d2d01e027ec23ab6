#!/usr/bin/env bash
# Launches the flagship on the local Flink cluster of docker/docker-compose.yml, checkpointed.
# With no arguments it runs the sample file (make sample); arguments replace the default input
# and output and add flags, e.g. a streaming job on the `events` stream that `ingest` feeds:
#   docker/submit.sh --streaming --source=redis_stream --stream_name=events \
#       --output_dir=/data/out/stream --detect_anomalies
set -euo pipefail
cd "$(dirname "$0")"
if [ "$#" -eq 0 ] && [ ! -f ../data/sample/events.jsonl ]; then
  echo "submit: no ../data/sample/events.jsonl: run 'make sample' first" >&2
  exit 2
fi
docker compose -f docker-compose.yml up -d --wait jobmanager taskmanager beam-worker-pool \
  prometheus node-exporter grafana \
  flink-job-server postgres redis ingest
exec docker compose -f docker-compose.yml run --rm submit "$@"
