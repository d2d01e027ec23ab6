"""``python -m beam_pipelines.backup``: see :mod:`beam_pipelines.backup.launcher`."""

import sys

from beam_pipelines import cli
from beam_pipelines.backup.launcher import PROG
from beam_pipelines.backup.launcher import run

if __name__ == '__main__':
    cli.configure_logging()
    sys.exit(cli.main(PROG, run))
