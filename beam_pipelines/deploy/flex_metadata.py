"""Dataflow flex-template ``metadata.json`` files, generated from the launchers' flags.

The flags are the one source of truth: each parameter is one flag of a launcher's
``PipelineOptions`` classes (or its own argparse parser), with the flag's name, its help text,
a regex from its type or choices, and ``isOptional`` unless the template needs it. Beam's and
Dataflow's own options (``--runner``, ``--project``, ``--sdk_container_image`` ...) are Dataflow's
to pass and are not listed. ``tests/deploy/test_flex_metadata.py`` fails when the checked-in files
drift from the flags; ``make flex-metadata`` rewrites them.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
from collections.abc import Callable

__all__ = [
    'LAUNCHER_FLAGS',
    'TEMPLATES',
    'Template',
    'metadata',
    'metadata_path',
    'render',
    'write_all',
]

TEMPLATES_DIR = 'flex_templates'

_INT = r'^-?[0-9]+$'
_FLOAT = r'^-?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][-+]?[0-9]+)?$'
_BOOL = r'^(true|false)$'


def _pipeline_options_parser(skip: tuple[str, ...] = ()) -> argparse.ArgumentParser:
    """The flagship's own flags: every class in :mod:`beam_pipelines.options` but ``skip``."""
    from beam_pipelines import options

    parser = argparse.ArgumentParser(add_help=False)
    for name in options.__all__:
        if name not in skip:
            getattr(options, name)._add_argparse_args(parser)
    return parser


# Not Dataflow's: Flink's checkpointing, and the local metrics export (Dataflow reports metrics
# to Cloud Monitoring).
_NOT_DATAFLOW = ('FlinkCheckpointOptions', 'ObservabilityOptions')


def _dataflow_parser() -> argparse.ArgumentParser:
    return _pipeline_options_parser(_NOT_DATAFLOW)


def _dataflow_streaming_parser() -> argparse.ArgumentParser:
    # Quality is measured on batch runs for now.
    return _pipeline_options_parser((*_NOT_DATAFLOW, 'QualityOptions'))


def _detect_anomalies_parser() -> argparse.ArgumentParser:
    from beam_pipelines import detect_anomalies

    return detect_anomalies._parser()


def _profile_parser() -> argparse.ArgumentParser:
    from beam_pipelines.profile import launcher

    return launcher._parser()


# Each Beam pipeline launcher's own flags (beside Beam's), by launcher name.
LAUNCHER_FLAGS: dict[str, Callable[[], argparse.ArgumentParser]] = {
    'event_analytics': _pipeline_options_parser,
    'feature_pipeline': _pipeline_options_parser,
    'detect_anomalies': _detect_anomalies_parser,
    'profile': _profile_parser,
}


@dataclasses.dataclass(frozen=True)
class Template:
    """One flex template: a launcher with fixed flags.

    Attributes:
        name: the template's folder under ``flex_templates/`` and its name.
        launcher: the launcher (:mod:`beam_pipelines.launchers`) the template runs.
        description: shown in the Dataflow console.
        parser: the launcher's flags.
        required: flags the template cannot run without.
        fixed_args: flags the template always passes (not parameters).
        streaming: a streaming template.
    """

    name: str
    launcher: str
    description: str
    parser: Callable[[], argparse.ArgumentParser]
    required: tuple[str, ...] = ()
    fixed_args: tuple[str, ...] = ()
    streaming: bool = False


TEMPLATES: tuple[Template, ...] = (
    Template(
        'event_analytics',
        'event_analytics',
        'Batch: parse, validate and deduplicate event files (JSON Lines, CSV, Avro, Parquet); '
        'windowed aggregates, dead letters, optional anomalies and PostgreSQL/Redis sinks.',
        _dataflow_parser,
        required=('input', 'output_dir'),
    ),
    Template(
        'event_analytics_streaming',
        'event_analytics',
        'Streaming: events from a Pub/Sub subscription; windowed aggregate panes with '
        'triggers and allowed lateness, dead letters, optional anomalies and sinks.',
        _dataflow_streaming_parser,
        required=('pubsub_subscription', 'output_dir'),
        fixed_args=('--streaming', '--source=pubsub'),
        streaming=True,
    ),
    Template(
        'feature_pipeline',
        'feature_pipeline',
        'Batch: per-entity rolling ML features from event files (offline Parquet, online '
        'Redis vectors), with the flagship parsing, validation and dead letters.',
        _dataflow_parser,
        required=('input', 'output_dir'),
        fixed_args=('--features',),
    ),
    Template(
        'detect_anomalies',
        'detect_anomalies',
        'Batch: score a CSV time series with the anomaly detectors; writes '
        'timestamp,value,anomaly_score,is_anomaly.',
        _detect_anomalies_parser,
    ),
    Template(
        'profile',
        'profile',
        'Batch: profile a dataset, schema-free (types, nulls, distinct estimates, min/max, '
        'quantiles, histograms); writes the profile as JSON.',
        _profile_parser,
        required=('input', 'output'),
    ),
)


def _label(dest: str) -> str:
    words = dest.replace('_', ' ')
    for short, long in (('secs', 'seconds'), ('url', 'URL'), ('pg', 'PostgreSQL')):
        words = ' '.join(long if w == short else w for w in words.split())
    return words[0].upper() + words[1:]


def _parameter(action: argparse.Action, template: Template) -> dict:
    name = action.option_strings[0].lstrip('-')
    if name != action.dest:
        raise ValueError(f'{template.name}: flag --{name} stores {action.dest!r}')
    if not action.help:
        raise ValueError(f'{template.name}: flag --{name} has no help text')
    help_text = ' '.join(action.help.split())
    param: dict = {'name': name, 'label': _label(name), 'helpText': help_text}
    param['isOptional'] = name not in template.required and not action.required
    switch = isinstance(action, argparse._StoreTrueAction | argparse._StoreFalseAction)
    if switch:
        param['regexes'] = [_BOOL]
        param['paramType'] = 'BOOLEAN'
    elif action.choices:
        choices = [str(c) for c in action.choices]
        param['regexes'] = ['^(' + '|'.join(choices) + ')$']
        param['paramType'] = 'ENUM'
        param['enumOptions'] = [{'value': c} for c in choices]
    elif action.type in (int, float):
        param['regexes'] = [_INT if action.type is int else _FLOAT]
        param['paramType'] = 'NUMBER'
    elif name == 'pubsub_subscription':
        param['regexes'] = [r'^projects/[^/]+/subscriptions/[^/]+$']
        param['paramType'] = 'PUBSUB_SUBSCRIPTION'
    else:
        param['paramType'] = 'TEXT'
    if (
        not switch
        and action.default not in (None, '', argparse.SUPPRESS)
        and 'default' not in help_text.lower()
    ):
        param['helpText'] += f' Default: {action.default}.'
    return param


def metadata(template: Template) -> dict:
    """The template's ``metadata.json`` content.

    Raises:
        ValueError: a flag without help, or whose name differs from its destination.
    """
    fixed = {a.split('=')[0].lstrip('-') for a in template.fixed_args}
    params = [
        _parameter(action, template)
        for action in template.parser()._actions
        if action.option_strings and action.help != argparse.SUPPRESS
        if not isinstance(action, argparse._HelpAction)
        if action.option_strings[0].lstrip('-') not in fixed
    ]
    missing = set(template.required) - {p['name'] for p in params}
    if missing:
        raise ValueError(f'{template.name}: required flags that do not exist: {sorted(missing)}')
    body: dict = {'name': template.name, 'description': template.description}
    body['streaming'] = template.streaming
    if template.streaming:
        # Replays after failures are harmless: the flagship deduplicates by event id and its
        # sinks upsert, so at-least-once mode is offered beside exactly-once.
        body.update(
            supportsAtLeastOnce=True, supportsExactlyOnce=True, defaultStreamingMode='EXACTLY_ONCE'
        )
    body['parameters'] = params
    return body


def render(template: Template) -> str:
    return json.dumps(metadata(template), indent=2, ensure_ascii=False) + '\n'


def metadata_path(root: str, template: Template) -> str:
    return os.path.join(root, TEMPLATES_DIR, template.name, 'metadata.json')


def _read(path: str) -> str | None:
    if not os.path.exists(path):
        return None
    with open(path, encoding='utf-8') as f:
        return f.read()


def stale(root: str) -> list[str]:
    """The ``metadata.json`` files under ``root`` that differ from the flags (or are missing)."""
    return [metadata_path(root, t) for t in TEMPLATES if _read(metadata_path(root, t)) != render(t)]


def write_all(root: str) -> list[str]:
    """Writes every template's ``metadata.json`` under ``root``; returns the paths changed."""
    changed = []
    for template in TEMPLATES:
        path = metadata_path(root, template)
        text = render(template)
        if _read(path) != text:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, 'w', encoding='utf-8') as f:
                f.write(text)
            changed.append(path)
    return changed


def get(name: str) -> Template:
    for template in TEMPLATES:
        if template.name == name:
            return template
    raise KeyError(f'unknown template {name!r} (known: {", ".join(t.name for t in TEMPLATES)})')
