#!/usr/bin/env bash
# Launches the flagship on the local Flink cluster of docker/docker-compose.yml, with
# checkpointing on. Extra flags go to the pipeline, e.g.
#   docker/submit.sh --detect_anomalies --window_size_secs=60
set -euo pipefail
cd "$(dirname "$0")"
if [ ! -f ../data/sample/events.jsonl ]; then
  echo "submit: no ../data/sample/events.jsonl: run 'make sample' first" >&2
  exit 2
fi
docker compose -f docker-compose.yml up -d --wait jobmanager taskmanager beam-worker-pool \
  flink-job-server postgres redis
exec docker compose -f docker-compose.yml run --rm submit "$@"
