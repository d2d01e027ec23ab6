"""``python -m beam_pipelines.backfill``: see :mod:`beam_pipelines.backfill.launcher`."""

import sys

from beam_pipelines import cli
from beam_pipelines.backfill.launcher import PROG
from beam_pipelines.backfill.launcher import run

if __name__ == '__main__':
    cli.configure_logging()
    sys.exit(cli.main(PROG, run))
