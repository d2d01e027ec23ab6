"""The launcher command lines in the README's deployment section are ones the launchers accept
(every flag known, values of the right type), so the documentation cannot drift from the
flags."""

from __future__ import annotations

import importlib
import os
import re
import shlex

from beam_pipelines import cli
from beam_pipelines import launchers

README = os.path.join(os.path.dirname(__file__), '..', '..', 'README.md')


def commands():
    with open(README) as f:
        text = f.read()
    section = text[text.index('## Runners and deployment') : text.index('## How it works')]
    lines, joined = [], ''
    for line in section.splitlines():
        if line.startswith('#') or line.startswith('```'):
            joined = ''
            continue
        joined += line.rstrip('\\').strip() + ' '
        if not line.endswith('\\'):
            lines.append(joined.strip())
            joined = ''
    return [
        shlex.split(line)
        for line in lines
        if re.match(r'python -m beam_pipelines (event_analytics|feature_pipeline) ', line)
        and '...' not in line
    ]


def test_the_readmes_launcher_commands_parse():
    found = commands()
    assert len(found) >= 3  # portable, Flink, Dataflow
    runners = set()
    for argv in found:
        launcher = launchers.get(argv[3])
        importlib.import_module(launcher.module)
        options = cli.parse_pipeline_args(argv[4:]).get_all_options()
        runners.add(options['runner'])
    assert runners >= {'PortableRunner', 'FlinkRunner', 'DataflowRunner'}
