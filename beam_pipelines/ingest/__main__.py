"""``python -m beam_pipelines.ingest``: see :mod:`beam_pipelines.ingest.launcher`."""

import sys

from beam_pipelines import cli
from beam_pipelines.ingest.launcher import PROG
from beam_pipelines.ingest.launcher import run

if __name__ == '__main__':
    cli.configure_logging()
    sys.exit(cli.main(PROG, run))
