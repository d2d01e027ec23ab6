"""The Flink deployment files, checked structurally (no Docker engine or Kubernetes here):
versions Beam supports, the services and ports that refer to each other, checkpointing on,
and launcher command lines that the launchers accept."""

from __future__ import annotations

import importlib
import os
import re

import apache_beam
import yaml
from apache_beam.options.pipeline_options import FlinkRunnerOptions

from beam_pipelines import cli
from beam_pipelines import launchers
from beam_pipelines.deploy import schedules
from beam_pipelines.ingest.launcher import _parser as ingest_parser

ROOT = os.path.join(os.path.dirname(__file__), '..', '..')
BEAM = apache_beam.__version__
SDK_IMAGE = re.compile(r'^beam-pipelines:\S+$')


def load(path):
    with open(os.path.join(ROOT, path)) as f:
        return list(yaml.safe_load_all(f))


def flink_release(image):
    """'1.20.1' of flink:1.20.1-java17 (a patch release: plugin jars are named by it)."""
    match = re.fullmatch(r'flink:(\d+\.\d+\.\d+)(-scala_[\d.]+)?(-java\d+)?', image)
    assert match, image
    return match.group(1)


def flink_version(image):
    return flink_release(image).rsplit('.', 1)[0]


def job_server_args(args):
    return dict(a.lstrip('-').split('=', 1) for a in args)


def check_launch(argv, job_host, job_port):
    """A launcher command line that submits to the job server with the worker pool."""
    launcher = launchers.get(argv[0])
    assert launcher.pipeline
    importlib.import_module(launcher.module)  # registers its options classes
    options = cli.parse_pipeline_args(argv[1:]).get_all_options()
    assert options['runner'] == 'PortableRunner'
    assert options['job_endpoint'] == f'{job_host}:{job_port}'
    assert options['environment_type'] == 'EXTERNAL'
    assert options['environment_config'] == 'localhost:50000'  # the pool's default port
    # Beam's Flink default is no checkpoints, and Beam takes them only from these options.
    assert options['checkpointing_interval'] > 0
    assert options['state_backend'] == 'rocksdb' and options['state_backend_storage_path']
    assert options['externalized_checkpoints_enabled']
    assert options['retain_externalized_checkpoints_on_cancellation']
    return options


def test_the_compose_file_runs_a_supported_flink_with_beams_job_server_and_worker_pool():
    (compose,) = load('docker/docker-compose.yml')
    services = compose['services']
    assert set(services) >= {
        'jobmanager',
        'taskmanager',
        'beam-worker-pool',
        'flink-job-server',
        'postgres',
        'redis',
        'submit',
    }
    flink = flink_version(services['jobmanager']['image'])
    for name in ('taskmanager', 'flink-state-init'):
        assert services[name]['image'] == services['jobmanager']['image']
    assert flink in FlinkRunnerOptions.PUBLISHED_FLINK_VERSIONS
    server = services['flink-job-server']
    assert server['image'] == f'apache/beam_flink{flink}_job_server:{BEAM}'
    args = job_server_args(server['command'])
    assert args['flink-master'] == 'jobmanager:8081'
    assert '8081:8081' in services['jobmanager']['ports']
    assert f'{args["job-port"]}:{args["job-port"]}' in server['ports']
    # The job server stages artifacts where the TaskManager (and its workers) read them.
    staging = f'beam-artifacts:{args["artifacts-dir"]}'
    for name in ('flink-job-server', 'taskmanager', 'beam-worker-pool'):
        assert staging in services[name]['volumes'], name
    properties = yaml.safe_load(services['jobmanager']['environment']['FLINK_PROPERTIES'])
    assert properties['jobmanager.rpc.address'] == 'jobmanager'
    assert properties['state.checkpoints.dir'].startswith('file:///flink/')
    # Flink runs as uid 9999: the state volume is handed to it before the cluster starts.
    init = services['flink-state-init']
    assert 'chown -R 9999:9999 /flink' in init['entrypoint'][-1]
    assert 'flink-state:/flink' in init['volumes']
    for name in ('jobmanager', 'taskmanager'):
        assert services[name]['depends_on']['flink-state-init'] == {
            'condition': 'service_completed_successfully'
        }
        assert 'flink-state:/flink' in services[name]['volumes']

    pool = services['beam-worker-pool']
    assert pool['network_mode'] == 'service:taskmanager'  # the TaskManager's localhost
    assert pool['entrypoint'] == ['/opt/apache/beam/boot'] and pool['command'] == ['--worker_pool']
    build = pool['build']  # relative to the compose file's folder
    assert os.path.exists(os.path.join(ROOT, 'docker', build['context'], build['dockerfile']))

    submit = services['submit']
    assert submit['image'] == pool['image']
    assert submit['entrypoint'][:3] == ['python', '-m', 'beam_pipelines']
    argv = submit['entrypoint'][3:] + submit['command']
    options = check_launch(argv, 'flink-job-server', args['job-port'])
    assert options['state_backend_storage_path'].startswith('file:///flink/')
    assert options['artifact_endpoint'] == f'flink-job-server:{args["artifact-port"]}'
    assert options['postgres_url'].split('@')[1].startswith('postgres:5432/')
    assert options['redis_url'].startswith('redis://redis:6379')
    assert options['input'].startswith('/data/') and '../data:/data' in submit['volumes']
    assert '../data:/data' in pool['volumes']  # the workers write where the launcher reads

    ingest = services['ingest']
    assert ingest['image'] == pool['image'] and ingest['command'][0] == 'ingest'
    parsed = ingest_parser().parse_args(ingest['command'][1:])
    assert parsed.redis_url == 'redis://redis:6379/0' and parsed.host == '0.0.0.0'
    assert f'{parsed.port}:{parsed.port}' in ingest['ports']
    assert 'BEAM_PIPELINES_INGEST_SECRETS' in ingest['environment']

    script = os.path.join(ROOT, 'docker', 'submit.sh')
    assert os.access(script, os.X_OK)
    with open(script) as f:
        text = f.read()
    assert 'docker-compose.yml' in text and 'run --rm submit' in text


def test_the_flink_kubernetes_operator_manifest():
    docs = {d['kind']: d for d in load('deploy/k8s/flink-deployment.yaml')}
    assert set(docs) == {'PersistentVolumeClaim', 'FlinkDeployment', 'Deployment', 'Service', 'Job'}
    flink = docs['FlinkDeployment']
    assert flink['apiVersion'] == 'flink.apache.org/v1beta1'
    version = flink_version(flink['spec']['image'])
    assert flink['spec']['flinkVersion'] == 'v' + version.replace('.', '_')
    assert version in FlinkRunnerOptions.PUBLISHED_FLINK_VERSIONS
    conf = flink['spec']['flinkConfiguration']
    assert conf['state.checkpoints.dir'].startswith('s3://')
    assert conf['high-availability.storageDir'].startswith('s3://')
    # s3:// needs Flink's S3 plugin of the same release, in every pod.
    (every_pod,) = flink['spec']['podTemplate']['spec']['containers']
    env = {e['name']: e['value'] for e in every_pod['env']}
    release = flink_release(flink['spec']['image'])
    assert env['ENABLE_BUILT_IN_PLUGINS'] == f'flink-s3-fs-presto-{release}.jar'
    pod = flink['spec']['taskManager']['podTemplate']['spec']
    containers = {c['name']: c for c in pod['containers']}
    assert set(containers) == {'flink-main-container', 'beam-worker-pool'}
    pool = containers['beam-worker-pool']
    assert SDK_IMAGE.match(pool['image'])
    assert pool['command'] == ['/opt/apache/beam/boot'] and pool['args'] == ['--worker_pool']
    assert pool['ports'][0]['containerPort'] == 50000

    server = docs['Deployment']['spec']['template']['spec']['containers'][0]
    assert server['image'] == f'apache/beam_flink{version}_job_server:{BEAM}'
    args = job_server_args(server['args'])
    # The operator names the JobManager's REST service <deployment>-rest.
    assert args['flink-master'] == f'{flink["metadata"]["name"]}-rest:8081'
    staging = {m['mountPath'] for m in server['volumeMounts']}
    assert args['artifacts-dir'] in staging
    main = containers['flink-main-container']
    assert args['artifacts-dir'] in {m['mountPath'] for m in main['volumeMounts']}
    service = docs['Service']
    assert service['spec']['selector'] == docs['Deployment']['spec']['selector']['matchLabels']
    assert int(args['job-port']) in {p['port'] for p in service['spec']['ports']}

    (launcher,) = docs['Job']['spec']['template']['spec']['containers']
    assert SDK_IMAGE.match(launcher['image'])
    options = check_launch(launcher['args'], service['metadata']['name'], args['job-port'])
    assert options['state_backend_storage_path'].startswith('s3://')


def test_the_cronjobs_are_generated_from_the_schedules():
    path = os.path.join(ROOT, schedules.K8S_FILE)
    with open(path) as f:
        shipped = os.path.join(ROOT, schedules.DEFAULT_FILE)
        assert f.read() == schedules.render_k8s(
            schedules.load(shipped), maintenance=schedules.load_maintenance(shipped)
        ), 'run `make schedules`'
    jobs = [d for d in load(schedules.K8S_FILE) if d['kind'] == 'CronJob']
    assert jobs
    for job in jobs:
        (container,) = job['spec']['jobTemplate']['spec']['template']['spec']['containers']
        assert SDK_IMAGE.match(container['image'])
        assert container['args'][0] in ('backfill', *schedules.MAINTENANCE_COMMANDS)
        assert job['spec']['concurrencyPolicy'] == 'Forbid'
