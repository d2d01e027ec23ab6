"""The images: Beam's SDK image of the Beam version in setup.py, a hash-pinned lock that
satisfies setup.py, files that exist, and the entry point that runs a launcher by name."""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys

import apache_beam
import pytest
from packaging.requirements import Requirement

from beam_pipelines import launchers

ROOT = os.path.join(os.path.dirname(__file__), '..', '..')
DOCKERFILES = ['docker/Dockerfile', 'flex_templates/Dockerfile']


def read(path):
    with open(os.path.join(ROOT, path)) as f:
        return f.read()


def setup_requirements():
    tree = ast.parse(read('setup.py'))
    for node in tree.body:
        if isinstance(node, ast.Assign) and node.targets[0].id == 'REQUIRED':
            return [Requirement(r) for r in ast.literal_eval(node.value)]
    raise AssertionError('no REQUIRED in setup.py')


def lock():
    """{name: (version, hashes)} of docker/requirements.txt."""
    pins = {}
    text = read('docker/requirements.txt').replace('\\\n', ' ')
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith('#'):
            continue
        spec, _, _ = line.partition(' --hash')
        req = Requirement(spec.strip())
        (pin,) = req.specifier
        assert pin.operator == '==', line
        hashes = re.findall(r'--hash=sha256:[0-9a-f]{64}', line)
        pins.setdefault(req.name.lower().replace('_', '-'), []).append((pin.version, hashes))
    return pins


def test_the_lock_pins_every_requirement_of_setup_py_with_hashes():
    pins = lock()
    for req in setup_requirements():
        name = req.name.lower().replace('_', '-')
        assert name in pins, f'{name} is not in docker/requirements.txt: run `make lock`'
        for version, hashes in pins[name]:
            assert req.specifier.contains(version), f'{name}=={version} vs {req}: `make lock`'
            assert hashes, name
    for name, entries in pins.items():
        assert all(hashes for _, hashes in entries), name


@pytest.mark.parametrize('dockerfile', DOCKERFILES)
def test_images_are_beams_sdk_image_of_the_pinned_beam_version(dockerfile):
    text = read(dockerfile)
    (arg,) = re.findall(r'^ARG BEAM_VERSION=(\S+)$', text, re.M)
    assert arg == apache_beam.__version__
    (beam_pin,) = lock()['apache-beam']
    assert beam_pin[0] == arg
    assert re.search(r'^FROM apache/beam_python3\.11_sdk:\$\{BEAM_VERSION\}$', text, re.M)
    assert 'pip install --no-cache-dir --require-hashes -r' in text
    assert 'pip check' in text
    for sources in re.findall(r'^COPY (?!--from)(.+) \S+$', text, re.M):
        for source in sources.split():
            assert os.path.exists(os.path.join(ROOT, source)), source
    # The workers boot Beam's SDK harness from the same image.
    if dockerfile.startswith('flex_templates'):
        assert 'ENTRYPOINT ["/opt/apache/beam/boot"]' in text
        assert 'FLEX_TEMPLATE_PYTHON_PY_FILE=/template/main.py' in text
    else:
        assert 'ENTRYPOINT ["python", "-m", "beam_pipelines"]' in text


def test_the_entry_point_lists_and_runs_launchers_by_name(tmp_path):
    listed = subprocess.run(
        [sys.executable, '-m', 'beam_pipelines', '--list'], capture_output=True, text=True
    )
    assert listed.returncode == 0
    for launcher in launchers.LAUNCHERS:
        assert launcher.name in listed.stdout
        __import__(launcher.module)  # every registered module exists
    out = tmp_path / 'e.jsonl'
    ran = subprocess.run(
        [
            sys.executable,
            '-m',
            'beam_pipelines',
            'generate_events',
            '--events=20',
            f'--output={out}',
        ],
        capture_output=True,
        text=True,
    )
    assert ran.returncode == 0, ran.stderr
    assert out.exists()
    unknown = subprocess.run(
        [sys.executable, '-m', 'beam_pipelines', 'nope'], capture_output=True, text=True
    )
    assert unknown.returncode == 2 and "unknown launcher 'nope'" in unknown.stderr
