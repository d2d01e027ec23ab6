"""Flex templates: metadata.json in step with the launchers' flags, parameters that the
launchers accept as Dataflow passes them, and the template entry point run end to end."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest

from beam_pipelines import cli
from beam_pipelines import launchers
from beam_pipelines.deploy import flex_metadata
from beam_pipelines.deploy import flex_template
from beam_pipelines.generate_events import GeneratorConfig
from beam_pipelines.generate_events import generate_records
from beam_pipelines.generate_events import write_events

ROOT = os.path.join(os.path.dirname(__file__), '..', '..')
TEMPLATE_KEYS = {
    'name',
    'description',
    'parameters',
    'streaming',
    'supportsAtLeastOnce',
    'supportsExactlyOnce',
    'defaultStreamingMode',
}
PARAM_KEYS = {'name', 'label', 'helpText', 'isOptional', 'regexes', 'paramType', 'enumOptions'}
PARAM_TYPES = {'TEXT', 'NUMBER', 'BOOLEAN', 'ENUM', 'PUBSUB_SUBSCRIPTION'}
TEMPLATES = [t.name for t in flex_metadata.TEMPLATES]


def load(name):
    with open(os.path.join(ROOT, 'flex_templates', name, 'metadata.json')) as f:
        return json.load(f)


def test_checked_in_metadata_equals_the_flags():
    assert flex_metadata.stale(ROOT) == [], 'run `make flex-metadata`'


def test_every_beam_pipeline_launcher_has_a_template():
    assert {t.launcher for t in flex_metadata.TEMPLATES} == {
        x.name for x in launchers.BEAM_PIPELINES
    }
    assert set(flex_metadata.LAUNCHER_FLAGS) == {x.name for x in launchers.BEAM_PIPELINES}


def example(param):
    """A value the parameter's regexes accept."""
    kind = param['paramType']
    if kind == 'BOOLEAN':
        return 'true'
    if kind == 'ENUM':
        return param['enumOptions'][-1]['value']
    if kind == 'NUMBER':
        return '2'
    if kind == 'PUBSUB_SUBSCRIPTION':
        return 'projects/p/subscriptions/s'
    return 'x'


@pytest.mark.parametrize('name', TEMPLATES)
def test_metadata_is_well_formed(name):
    meta = load(name)
    assert set(meta) <= TEMPLATE_KEYS and meta['name'] == name and meta['description']
    assert meta['streaming'] == flex_metadata.get(name).streaming
    names = [p['name'] for p in meta['parameters']]
    assert len(names) == len(set(names))
    assert 'checkpointing_interval' not in names  # Flink's options are not Dataflow's
    for p in meta['parameters']:
        assert set(p) <= PARAM_KEYS and p['label'] and p['helpText'], p
        assert p['paramType'] in PARAM_TYPES
        for regex in p.get('regexes', ()):
            assert re.fullmatch(regex, example(p)), (p['name'], regex)
    required = {p['name'] for p in meta['parameters'] if not p['isOptional']}
    assert required >= set(flex_metadata.get(name).required)


OWN_PARSERS = ('detect_anomalies', 'profile')  # launchers with their own argparse flags


@pytest.mark.parametrize('name', [t for t in TEMPLATES if t not in OWN_PARSERS])
def test_every_parameter_is_a_flag_the_launcher_accepts_as_dataflow_passes_it(name):
    template = flex_metadata.get(name)
    argv = [*template.fixed_args] + [
        f'--{p["name"]}={example(p)}' for p in load(name)['parameters']
    ]
    options = cli.parse_pipeline_args(argv).get_all_options()
    for p in load(name)['parameters']:
        if p['paramType'] == 'BOOLEAN':
            assert options[p['name']] is True, p['name']


@pytest.mark.parametrize('name', OWN_PARSERS)
def test_own_parser_parameters_are_their_flags(name):
    argv = [f'--{p["name"]}={example(p)}' for p in load(name)['parameters']]
    _, unknown = flex_metadata.LAUNCHER_FLAGS[name]().parse_known_args(argv)
    assert unknown == []


def test_booleans_as_dataflow_passes_them():
    assert cli.parse_pipeline_args(['--stop_at_end=true']).get_all_options()['stop_at_end']
    assert not cli.parse_pipeline_args(['--stop_at_end=false']).get_all_options()['stop_at_end']
    with pytest.raises(cli.UsageError, match='expected true or false'):
        cli.parse_pipeline_args(['--stop_at_end=maybe'])


@pytest.mark.e2e
def test_the_template_entry_point_runs_a_template_as_dataflow_starts_it(tmp_path):
    records, _ = generate_records(GeneratorConfig(events=500, seed=2, entities=10))
    write_events(records, str(tmp_path / 'events.jsonl'), 'jsonl')
    env = {**os.environ, 'BEAM_PIPELINES_TEMPLATE': 'feature_pipeline'}
    done = subprocess.run(
        [
            sys.executable,
            os.path.join(ROOT, 'flex_templates', 'main.py'),
            f'--input={tmp_path / "events.jsonl"}',
            f'--output_dir={tmp_path / "out"}',
            '--detect_anomalies=false',
            '--num_shards=2',
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    summary = json.loads((tmp_path / 'out' / 'run_summary.json').read_text())
    assert summary['balanced'] and summary['counts']['features'] == summary['counts']['valid']


TARGET = flex_template.Target('my-project', 'europe-west1', 'my-bucket')


def test_commands_build_push_and_run_the_template():
    path = os.path.join(ROOT, 'flex_templates', 'event_analytics', 'metadata.json')
    params = {'input': 'gs://b/in/*.jsonl', 'output_dir': 'gs://b/out', 'anomaly_value': 'p95'}
    params['feature_horizons'] = '5m,1h'
    build, push, spec, run = flex_template.commands('event_analytics', TARGET, params, path)
    image = 'europe-west1-docker.pkg.dev/my-project/beam-pipelines/event-analytics:latest'
    assert build[:4] == ['docker', 'build', '-f', 'flex_templates/Dockerfile']
    assert os.path.exists(os.path.join(ROOT, build[3])) and image in build
    assert push == ['docker', 'push', image]
    assert spec[:5] == [
        'gcloud',
        'dataflow',
        'flex-template',
        'build',
        TARGET.spec('event_analytics'),
    ]
    assert spec[spec.index('--metadata-file') + 1] == path
    assert re.fullmatch(r'event-analytics-\d{8}-\d{6}', run[4])  # a batch job's name per run
    assert f'sdk_container_image={image}' in run
    assert '^~^feature_horizons=5m,1h' in run  # gcloud would split on the comma
    assert 'input=gs://b/in/*.jsonl' in run


@pytest.mark.parametrize(
    ('params', 'problem'),
    [
        (
            {'input': 'x', 'output_dir': 'y', 'no_such_flag': '1'},
            "unknown parameter 'no_such_flag'",
        ),
        (
            {'input': 'x', 'output_dir': 'y', 'num_shards': 'many'},
            "num_shards='many' does not match",
        ),
        ({'input': 'x'}, "missing required parameter 'output_dir'"),
    ],
)
def test_bad_run_parameters_are_refused_before_submission(params, problem):
    with pytest.raises(ValueError, match=re.escape(problem)):
        flex_template.check_parameters(load('event_analytics'), params)
