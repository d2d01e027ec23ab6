"""``python -m beam_pipelines NAME [flags]``: runs a launcher by name (the container's entry
point); ``--list`` lists them."""

from __future__ import annotations

import runpy
import sys

from beam_pipelines import launchers


def main(argv: list[str]) -> int:
    if not argv or argv[0] in ('-h', '--help', '--list'):
        width = max(len(x.name) for x in launchers.LAUNCHERS)
        print('usage: python -m beam_pipelines NAME [flags]   (NAME --help for its flags)\n')
        for x in launchers.LAUNCHERS:
            print(f'  {x.name:<{width}}  {x.summary}')
        return 0 if argv else 2
    try:
        launcher = launchers.get(argv[0])
    except KeyError as exc:
        print(f'beam_pipelines: error: {exc.args[0]}', file=sys.stderr)
        return 2
    # Exactly as `python -m MODULE flags`: the launcher sees its own name and flags.
    sys.argv = [launcher.module, *argv[1:]]
    runpy.run_module(launcher.module, run_name='__main__', alter_sys=True)
    return 0


if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))
