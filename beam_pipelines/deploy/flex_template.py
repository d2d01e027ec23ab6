"""The command lines that build and run a flex template on Dataflow.

Printed (``make flex-template PIPELINE=...``) or run (``--execute``, where ``docker`` and
``gcloud`` are installed and logged in). Run parameters are checked here against the template's
``metadata.json`` (names, regexes, required ones) before anything is submitted: Dataflow would
reject the same mistakes only after the image has started.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import re
import shlex

from beam_pipelines.deploy import flex_metadata

__all__ = ['Target', 'check_parameters', 'commands']


@dataclasses.dataclass(frozen=True)
class Target:
    """Where the template goes: Google Cloud project, region, bucket, Artifact Registry."""

    project: str
    region: str
    bucket: str
    repository: str = 'beam-pipelines'
    tag: str = 'latest'

    def image(self, template: str) -> str:
        name = template.replace('_', '-')
        return f'{self.region}-docker.pkg.dev/{self.project}/{self.repository}/{name}:{self.tag}'

    def spec(self, template: str) -> str:
        return f'gs://{self.bucket}/templates/{template}.json'


def check_parameters(metadata: dict, parameters: dict[str, str]) -> None:
    """Raises ValueError naming every parameter that Dataflow would refuse."""
    declared = {p['name']: p for p in metadata['parameters']}
    problems = [f'unknown parameter {n!r}' for n in parameters if n not in declared]
    for name, value in parameters.items():
        for regex in declared.get(name, {}).get('regexes', ()):
            if not re.fullmatch(regex, value):
                problems.append(f'{name}={value!r} does not match {regex}')
    problems += [
        f'missing required parameter {p["name"]!r}'
        for p in metadata['parameters']
        if not p['isOptional'] and p['name'] not in parameters
    ]
    if problems:
        raise ValueError(f'{metadata["name"]}: ' + '; '.join(problems))


def commands(
    template_name: str, target: Target, parameters: dict[str, str], metadata_file: str
) -> list[list[str]]:
    """The build, push, template build and run commands, as argument lists.

    Raises:
        KeyError: an unknown template.
        ValueError: parameters the template refuses.
    """
    template = flex_metadata.get(template_name)
    with open(metadata_file, encoding='utf-8') as f:
        metadata = json.load(f)
    check_parameters(metadata, parameters)
    image, spec = target.image(template.name), target.spec(template.name)
    gcp = ['--project', target.project]
    job = template.name.replace('_', '-')
    if not template.streaming:
        # Batch jobs get a name per run; a streaming job keeps its name, so that a second launch
        # fails instead of running twice (replace it with `gcloud dataflow flex-template run
        # --update`).
        job += dt.datetime.now(dt.UTC).strftime('-%Y%m%d-%H%M%S')
    run = [
        *('gcloud', 'dataflow', 'flex-template', 'run', job),
        *('--template-file-gcs-location', spec, '--region', target.region, *gcp),
        # The workers run the launcher's image, so both hold the same code and packages.
        *('--parameters', f'sdk_container_image={image}'),
    ]
    for name, value in parameters.items():
        # gcloud splits --parameters values on commas unless another delimiter is declared.
        run += ['--parameters', f'^~^{name}={value}' if ',' in value else f'{name}={value}']
    return [
        [
            *('docker', 'build', '-f', 'flex_templates/Dockerfile'),
            *('--build-arg', f'TEMPLATE={template.name}', '-t', image, '.'),
        ],
        ['docker', 'push', image],
        [
            *('gcloud', 'dataflow', 'flex-template', 'build', spec, '--image', image),
            *('--sdk-language', 'PYTHON', '--metadata-file', metadata_file, *gcp),
        ],
        run,
    ]


def shell(command: list[str]) -> str:
    return ' '.join(shlex.quote(a) for a in command)
