"""Airflow DAGs for the schedules in ``deploy/schedules.yaml``: one DAG per schedule, each
running its pipeline with Beam's provider operator for the run's data interval.

Install ``apache-airflow-providers-apache-beam`` and this package (``pip install .``) where the
tasks run, put this file and ``schedules.yaml`` in the DAG folder (or point
``BEAM_PIPELINES_SCHEDULES`` at the schedules file), and set, in the scheduler's environment,
``BEAM_PIPELINES_RUNNER`` (default DirectRunner) and ``BEAM_PIPELINES_RUNNER_OPTIONS`` (a JSON
object of runner flags, e.g. for the Flink cluster of ``docker/docker-compose.yml``
``{"job_endpoint": "flink-job-server:8099", "artifact_endpoint": "flink-job-server:8098",
"environment_type": "EXTERNAL", "environment_config": "localhost:50000"}``: the job server
advertises its artifact address as its bind address, so give it, and the worker pool is at
localhost from the TaskManager it sits beside). Both are read from the environment, not from Airflow
Variables, so parsing the DAG file never queries the metadata database.
Backfills are Airflow's own: ``airflow dags backfill -s 2026-11-01 -e 2026-11-07
event-analytics-daily``; every run replaces its partition's outputs and upserts the warehouse,
so reruns are safe.
"""

from __future__ import annotations

import datetime as dt
import json
import os

from airflow import DAG
from airflow.providers.apache.beam.operators.beam import BeamRunPythonPipelineOperator

from beam_pipelines import launchers
from beam_pipelines.deploy import schedules

_HERE = os.path.dirname(os.path.abspath(__file__))
SCHEDULES = os.environ.get('BEAM_PIPELINES_SCHEDULES') or next(
    (
        p
        for p in (
            os.path.join(_HERE, 'schedules.yaml'),
            os.path.join(_HERE, '..', 'schedules.yaml'),
        )
        if os.path.exists(p)
    ),
    'schedules.yaml',
)
RUNNER = os.environ.get('BEAM_PIPELINES_RUNNER', 'DirectRunner')
RUNNER_OPTIONS = json.loads(os.environ.get('BEAM_PIPELINES_RUNNER_OPTIONS') or '{}')


def _dag(schedule: schedules.Schedule) -> DAG:
    with DAG(
        dag_id=schedule.name,
        description=schedule.description or None,
        schedule=schedule.cron,
        start_date=dt.datetime(2026, 1, 1, tzinfo=dt.UTC),
        catchup=False,
        max_active_runs=1,
        default_args={'retries': 2, 'retry_delay': dt.timedelta(minutes=5)},
        tags=['beam_pipelines', schedule.pipeline],
    ) as dag:
        BeamRunPythonPipelineOperator(
            task_id='run',
            # `python -m beam_pipelines.<launcher>`: the installed package, not a file.
            py_file=launchers.get(schedule.pipeline).module,
            py_options=['-m'],
            runner=RUNNER,
            pipeline_options={**RUNNER_OPTIONS, **schedules.airflow_options(schedule)},
        )
    return dag


# Airflow collects the DAGs it finds among the module's globals.
for _schedule in schedules.load(SCHEDULES):
    globals()[_schedule.name.replace('-', '_')] = _dag(_schedule)
