"""``python -m beam_pipelines.deploy``: deployment files and commands.

::

    python -m beam_pipelines.deploy flex-metadata [--check]  # write flex_templates/*/metadata.json
    python -m beam_pipelines.deploy flex-template --template event_analytics \\
        --project P --region R --bucket B --parameter input=gs://B/in/*.jsonl \\
        --parameter output_dir=gs://B/out [--execute]
    python -m beam_pipelines.deploy schedules [--write]   # validate deploy/schedules.yaml
"""

from __future__ import annotations

import subprocess
import sys

from beam_pipelines import cli
from beam_pipelines.deploy import flex_metadata
from beam_pipelines.deploy import flex_template
from beam_pipelines.deploy import schedules

PROG = 'beam_pipelines.deploy'
ROOT = ''  # paths relative to the working directory (the repository root)


def _parser():
    parser = cli.ArgumentParser(prog=f'python -m {PROG}', allow_abbrev=False)
    commands = parser.add_subparsers(dest='command', required=True, parser_class=cli.ArgumentParser)
    meta = commands.add_parser('flex-metadata', help='Write the templates metadata.json files.')
    meta.add_argument('--check', action='store_true', help='Only report files out of date.')
    flex = commands.add_parser('flex-template', help='Build and run commands for a template.')
    flex.add_argument(
        '--template', required=True, choices=[t.name for t in flex_metadata.TEMPLATES]
    )
    flex.add_argument('--project', required=True, help='Google Cloud project.')
    flex.add_argument('--region', required=True, help='Dataflow region, e.g. europe-west1.')
    flex.add_argument('--bucket', required=True, help='GCS bucket for the template spec.')
    flex.add_argument('--repository', default='beam-pipelines', help='Artifact Registry repo.')
    flex.add_argument('--tag', default='latest', help='Image tag.')
    flex.add_argument(
        '--parameter', action='append', default=[], help='NAME=VALUE run parameter (repeat).'
    )
    flex.add_argument('--execute', action='store_true', help='Run the commands, not print.')
    sched = commands.add_parser('schedules', help='Validate the schedules as code.')
    sched.add_argument('--file', default=schedules.DEFAULT_FILE, help='The schedules file.')
    sched.add_argument(
        '--write', action='store_true', help=f'Also regenerate {schedules.K8S_FILE}.'
    )
    return parser


def run(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == 'flex-metadata':
        if args.check:
            stale = flex_metadata.stale(ROOT)
            for path in stale:
                print(f'{PROG}: out of date: {path} (run make flex-metadata)', file=sys.stderr)
            return 1 if stale else 0
        for path in flex_metadata.write_all(ROOT):
            print(f'{PROG}: wrote {path}')
        return 0
    if args.command == 'schedules':
        try:
            entries = schedules.load(args.file)
            jobs = schedules.load_maintenance(args.file)
        except ValueError as exc:
            raise cli.UsageError(str(exc)) from None
        for entry in entries:
            print(f'{entry.name}: {entry.cron} ({entry.timezone}) next {entry.next_run()}')
        for job in jobs:
            print(f'{job.name}: {job.cron} ({job.timezone}) {" ".join(job.argv()[:2])}')
        if args.write:
            with open(schedules.K8S_FILE, 'w', encoding='utf-8') as f:
                f.write(schedules.render_k8s(entries, maintenance=jobs))
            print(f'{PROG}: wrote {schedules.K8S_FILE}')
        return 0
    parameters = {}
    for item in args.parameter:
        name, eq, value = item.partition('=')
        if not eq:
            raise cli.UsageError(f'--parameter {item!r}: expected NAME=VALUE')
        parameters[name] = value
    target = flex_template.Target(args.project, args.region, args.bucket, args.repository, args.tag)
    template = flex_metadata.get(args.template)
    try:
        commands = flex_template.commands(
            args.template, target, parameters, flex_metadata.metadata_path(ROOT, template)
        )
    except ValueError as exc:
        raise cli.UsageError(str(exc)) from None
    for command in commands:
        print(flex_template.shell(command), flush=True)
        if args.execute:
            subprocess.run(command, check=True)
    return 0


if __name__ == '__main__':
    cli.configure_logging()
    sys.exit(cli.main(PROG, run))
