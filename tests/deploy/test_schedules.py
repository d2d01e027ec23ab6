"""Schedules as code: validation with croniter and the launchers' flags, what each scheduler
runs, and the Airflow DAG file (compiled, and executed against a stand-in of Airflow's API)."""

from __future__ import annotations

import datetime as dt
import os
import py_compile
import runpy
import sys
import types

import pytest
import yaml

from beam_pipelines import launchers
from beam_pipelines.backfill import launcher as backfill
from beam_pipelines.deploy import schedules

ROOT = os.path.join(os.path.dirname(__file__), '..', '..')
SCHEDULES = os.path.join(ROOT, schedules.DEFAULT_FILE)
DAG_FILE = os.path.join(ROOT, 'deploy', 'airflow', 'beam_pipelines_dags.py')

GOOD = {
    'name': 'daily',
    'pipeline': 'event_analytics',
    'cron': '0 2 * * *',
    'args': {'input': 'in/dt={date}/*.jsonl', 'output_dir': 'out/dt={date}'},
}


def write(tmp_path, *entries):
    path = tmp_path / 'schedules.yaml'
    path.write_text(yaml.safe_dump({'schedules': list(entries)}))
    return str(path)


def test_the_shipped_schedules_are_valid():
    loaded = schedules.load(SCHEDULES)
    assert {s.pipeline for s in loaded} <= {x.name for x in launchers.BEAM_PIPELINES}
    start = dt.datetime(2026, 12, 1, 0, 30, tzinfo=dt.UTC)
    daily = next(s for s in loaded if s.name == 'event-analytics-daily')
    assert daily.next_run(start) == dt.datetime(2026, 12, 1, 1, 15, tzinfo=dt.UTC)


@pytest.mark.parametrize(
    ('change', 'problem'),
    [
        ({'cron': '61 * * * *'}, 'invalid cron spec'),
        ({'cron': 'every day'}, 'invalid cron spec'),
        ({'timezone': 'Mars/Olympus'}, 'unknown time zone'),
        ({'pipeline': 'nope'}, "unknown pipeline 'nope'"),
        ({'name': 'Daily_Run'}, 'name must be lowercase'),
        ({'partition': 'last week'}, 'is not a date'),
        ({'args': {'input': 'x', 'window_sise_secs': 60}}, 'has no flag --window_sise_secs'),
        ({'args': {'input': 'in/{date}', 'detect_anomalies': 'yes'}}, 'takes true/false'),
        ({'args': {'input': 'in/x.jsonl'}}, 'no arg names the partition'),
        ({'every': 'day'}, 'unknown keys'),
    ],
)
def test_bad_schedules_are_refused_with_the_reason(tmp_path, change, problem):
    with pytest.raises(ValueError, match=problem):
        schedules.load(write(tmp_path, {**GOOD, **change}))


def test_names_are_unique(tmp_path):
    with pytest.raises(ValueError, match='unique'):
        schedules.load(write(tmp_path, GOOD, GOOD))


def test_a_scheduled_run_is_a_one_partition_backfill(capsys):
    schedule = schedules.Schedule(**{**GOOD, 'args': {**GOOD['args'], 'detect_anomalies': True}})
    argv = schedules.backfill_argv(schedule)
    assert argv[0] == 'backfill' and argv.count('yesterday') == 2
    # The CronJob's command line is one the backfill accepts.
    cut = argv.index('--')
    assert backfill.run([*argv[1:cut], '--dry_run', *argv[cut:]]) == 0
    (line,) = capsys.readouterr().out.splitlines()
    yesterday = (dt.datetime.now(dt.UTC) - dt.timedelta(days=1)).strftime('%Y-%m-%d')
    assert line == (
        f'{yesterday}: python -m beam_pipelines.event_analytics --input=in/dt={yesterday}/*.jsonl '
        f'--output_dir=out/dt={yesterday} --detect_anomalies'
    )


def test_airflow_gets_the_flags_as_templates_of_the_data_interval():
    schedule = schedules.Schedule(
        **{**GOOD, 'args': {'input': 'in/{date}/{hour}', 'stop_at_end': True, 'features': False}}
    )
    assert schedules.airflow_options(schedule) == {
        'input': 'in/{{ data_interval_start.strftime("%Y-%m-%d") }}/'
        '{{ data_interval_start.strftime("%H") }}',
        'stop_at_end': True,
    }


def test_the_airflow_dag_file_compiles_and_builds_a_dag_per_schedule(monkeypatch):
    py_compile.compile(DAG_FILE, doraise=True)
    made = []

    class DAG:
        def __init__(self, **kwargs):
            self.kwargs = kwargs

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

    class BeamRunPythonPipelineOperator:
        def __init__(self, **kwargs):
            made.append(kwargs)

    airflow = types.ModuleType('airflow')
    airflow.DAG = DAG
    beam_ops = types.ModuleType('airflow.providers.apache.beam.operators.beam')
    beam_ops.BeamRunPythonPipelineOperator = BeamRunPythonPipelineOperator
    for name in ('airflow.providers', 'airflow.providers.apache', 'airflow.providers.apache.beam'):
        monkeypatch.setitem(sys.modules, name, types.ModuleType(name))
    monkeypatch.setitem(sys.modules, 'airflow', airflow)
    monkeypatch.setitem(
        sys.modules, 'airflow.providers.apache.beam.operators', types.ModuleType('x')
    )
    monkeypatch.setitem(sys.modules, 'airflow.providers.apache.beam.operators.beam', beam_ops)
    monkeypatch.setenv('BEAM_PIPELINES_RUNNER_OPTIONS', '{"checkpointing_interval": 60000}')
    monkeypatch.delenv('BEAM_PIPELINES_SCHEDULES', raising=False)
    namespace = runpy.run_path(DAG_FILE)
    loaded = schedules.load(SCHEDULES)
    dags = [v for v in namespace.values() if isinstance(v, DAG)]
    assert sorted(d.kwargs['dag_id'] for d in dags) == sorted(s.name for s in loaded)
    for dag, schedule in zip(dags, loaded):
        assert dag.kwargs['schedule'] == schedule.cron and dag.kwargs['max_active_runs'] == 1
    for task, schedule in zip(made, loaded):
        assert task['py_file'] == launchers.get(schedule.pipeline).module
        assert task['py_options'] == ['-m']
        assert task['pipeline_options']['checkpointing_interval'] == 60000
        assert 'data_interval_start' in task['pipeline_options']['input']


def test_the_shipped_maintenance_jobs_are_valid():
    jobs = schedules.load_maintenance(SCHEDULES)
    assert {j.command for j in jobs} == {'gdpr', 'backup'}
    assert any(j.argv()[:2] == ['gdpr', 'retention'] for j in jobs)


@pytest.mark.parametrize(
    ('args', 'problem'),
    [
        (['retention', '--retention_dayz', '3'], 'unknown arguments'),
        (['erase', '--postgres_url', 'x'], 'required'),
        (['nope'], 'invalid choice'),
    ],
)
def test_bad_maintenance_jobs_are_refused_with_the_reason(tmp_path, args, problem):
    path = tmp_path / 'schedules.yaml'
    job = {'name': 'cleanup', 'command': 'gdpr', 'cron': '0 3 * * *', 'args': args}
    path.write_text(yaml.safe_dump({'schedules': [], 'maintenance': [job]}))
    with pytest.raises(ValueError, match=problem):
        schedules.load_maintenance(str(path))
