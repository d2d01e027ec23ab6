"""``python -m beam_pipelines.sync``: see :mod:`beam_pipelines.sync`."""

import sys

from beam_pipelines import cli
from beam_pipelines.sync.launcher import PROG
from beam_pipelines.sync.launcher import run

if __name__ == '__main__':
    cli.configure_logging()
    sys.exit(cli.main(PROG, run))
