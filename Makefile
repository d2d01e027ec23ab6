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

.PHONY: install run test lint format bench bench-sinks bench-latency bench-ingest bench-nab migrate sample clean

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
bench-nab: $(STAMP)
	mkdir -p bench_out
	$(BIN)/python -m beam_pipelines.evaluate_nab --data_dir $(NAB_DIR) --output bench_out/nab_results.json
