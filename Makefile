# Two commands on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
SAMPLE := data/sample/events.jsonl
SAMPLE_EVENTS ?= 200000
BENCH_EVENTS ?= 1000000
PYTEST_WORKERS ?= 2
POSTGRES_URL ?= postgresql://

.PHONY: install run test lint format bench bench-sweep bench-anomaly bench-sinks bench-latency bench-ingest bench-nab migrate sample clean \
	chaos audit fuzz \
	lock lock-check flex-metadata flex-template schedules flink-up flink-submit flink-down

$(STAMP): setup.py pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

$(SAMPLE): | $(STAMP)
	$(BIN)/python -m beam_pipelines.generate_events --events $(SAMPLE_EVENTS) --seed 7 --output $(SAMPLE)

sample: $(SAMPLE)

run: $(STAMP) $(SAMPLE)
	$(BIN)/python -m beam_pipelines.event_analytics --runner=DirectRunner \
		--input '$(SAMPLE)' --output_dir out

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

test: $(STAMP) lint
	$(BIN)/python -m pytest -q -n $(PYTEST_WORKERS) -p no:cacheprovider

bench: $(STAMP)
	$(BIN)/python -m beam_pipelines.bench --events $(BENCH_EVENTS)

# The cost curve: the flagship over input sizes and key cardinalities (long: 20M events).
bench-sweep: $(STAMP)
	$(BIN)/python -m beam_pipelines.bench --events $(BENCH_EVENTS) --sinks off --latency off \
		--sizes 1M,5M,20M --cardinalities 1k,100k,1M

# The anomaly stage alone: points scored per second on one core.
bench-anomaly: $(STAMP)
	$(BIN)/python -m beam_pipelines.bench_anomaly --points 200000 --keys 50

# Needs PostgreSQL and Redis (PG*/REDIS_URL as in the README).
bench-sinks: $(STAMP)
	$(BIN)/python -m beam_pipelines.bench_sinks --events 200000

# Needs Redis: local continuous mode, event sent -> pane visible in Redis (VIA=http: through the
# HTTP ingestion service).
VIA ?= redis
bench-latency: $(STAMP)
	$(BIN)/python -m beam_pipelines.bench_latency --rate 10000 --seconds 30 --every 1s --via $(VIA)

migrate: $(STAMP)
	$(BIN)/python -m beam_pipelines.warehouse migrate --postgres_url '$(POSTGRES_URL)'

clean:
	rm -rf out data bench_out .pytest_cache .ruff_cache .hypothesis

# Needs Redis: the HTTP ingestion service's throughput (single events and batches).
bench-ingest: $(STAMP)
	$(BIN)/python -m beam_pipelines.bench_ingest --seconds 10 --concurrency 32 --batch 100

# Anomaly detectors on the labelled NAB series in ../shared/datasets/nab (NAB scoring).
NAB_DIR ?= ../shared/datasets/nab
# Fault injection on private PostgreSQL and Redis servers: CHAOS_FAULTS runs per fault type
# (crash and restart, outage, Redis kill and pause, bundle failures after writes, SIGKILL),
# each checked against a clean run (~30 min at 20). Report: bench_out/chaos/chaos.json.
CHAOS_FAULTS ?= 20
chaos: $(STAMP)
	$(BIN)/python -m beam_pipelines.reliability.chaos --faults $(CHAOS_FAULTS) --out bench_out/chaos

# Known vulnerabilities in the pinned dependencies (docker/requirements.txt, hash-pinned), from
# PyPI's advisory data. --strict: a package that could not be audited (PyPI unreachable) fails
# the audit instead of passing it unchecked.
audit: $(STAMP)
	$(BIN)/pip install --quiet pip-audit
	$(BIN)/pip-audit --strict --requirement docker/requirements.txt --require-hashes --disable-pip \
		--progress-spinner off

# Fuzz every parser and the ingestion endpoints (atheris; fuzz_http needs Redis). FUZZ_SECONDS
# per target; prints a table and writes fuzz_out/report.json (see fuzz/README.md).
FUZZ_SECONDS ?= 60
fuzz: $(STAMP)
	$(BIN)/pip install --quiet -e '.[test,fuzz]'
	$(BIN)/python -m fuzz.run_all --seconds $(FUZZ_SECONDS)

bench-nab: $(STAMP)
	mkdir -p bench_out
	$(BIN)/python -m beam_pipelines.evaluate_nab --data_dir $(NAB_DIR) --output bench_out/nab_results.json

# --- Deployment (see README: Running on Flink, Dataflow and schedulers) ---

# The images' hash-pinned requirements, from setup.py (needs PyPI).
lock: $(STAMP)
	$(BIN)/pip install --quiet uv
	{ printf '%s\n' '# Every package the launchers and workers need, pinned with hashes, for the images' \
	  '# (docker/Dockerfile, flex_templates/Dockerfile: pip install --require-hashes).' \
	  '# Generated from setup.py by `make lock` (uv pip compile --universal --generate-hashes);' \
	  '# tests/deploy/test_images.py checks that it still satisfies setup.py.'; \
	  $(BIN)/uv pip compile setup.py --universal --generate-hashes --python-version 3.11 \
	    --no-header --quiet --index-url https://pypi.org/simple; } > docker/requirements.txt

# What the images' pip steps do, without Docker: a fresh venv from the hash-pinned lock, the
# package installed as in the image, pip check, and the flagship run from it.
lock-check: $(SAMPLE)
	rm -rf .bench/lockvenv && $(PYTHON) -m venv .bench/lockvenv
	.bench/lockvenv/bin/pip install --quiet --no-cache-dir --require-hashes -r docker/requirements.txt
	.bench/lockvenv/bin/pip install --quiet --no-cache-dir --no-deps .
	.bench/lockvenv/bin/pip check
	cd .bench && lockvenv/bin/python -m beam_pipelines event_analytics \
		--input ../$(SAMPLE) --output_dir lock-check-out

# flex_templates/*/metadata.json from the launchers' flags.
flex-metadata: $(STAMP)
	$(BIN)/python -m beam_pipelines.deploy flex-metadata

# Prints the build, push and run commands of a flex template (EXECUTE=1 runs them).
PIPELINE ?= event_analytics
PROJECT ?= my-project
REGION ?= europe-west1
BUCKET ?= my-bucket
PARAMS ?= input=gs://$(BUCKET)/events/*.jsonl output_dir=gs://$(BUCKET)/out/$(PIPELINE)
flex-template: $(STAMP)
	$(BIN)/python -m beam_pipelines.deploy flex-template --template $(PIPELINE) \
		--project $(PROJECT) --region $(REGION) --bucket $(BUCKET) \
		$(foreach p,$(PARAMS),--parameter '$(p)') $(if $(EXECUTE),--execute)

# Validates deploy/schedules.yaml and regenerates deploy/k8s/cronjobs.yaml.
schedules: $(STAMP)
	$(BIN)/python -m beam_pipelines.deploy schedules --write

# The local Flink cluster of docker/docker-compose.yml (needs a Docker engine).
flink-up:
	docker compose -f docker/docker-compose.yml up -d --build --wait
flink-submit: $(SAMPLE)
	docker/submit.sh
flink-down:
	docker compose -f docker/docker-compose.yml down
