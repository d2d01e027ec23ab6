"""``python -m beam_pipelines.ops``: see :mod:`beam_pipelines.ops.launcher`."""

import sys

from beam_pipelines import cli
from beam_pipelines.ops.launcher import PROG
from beam_pipelines.ops.launcher import run

if __name__ == '__main__':
    cli.configure_logging()
    sys.exit(cli.main(PROG, run))
