"""``python -m beam_pipelines.gdpr``: see :mod:`beam_pipelines.gdpr.launcher`."""

import sys

from beam_pipelines import cli
from beam_pipelines.gdpr.launcher import PROG
from beam_pipelines.gdpr.launcher import run

if __name__ == '__main__':
    cli.configure_logging()
    sys.exit(cli.main(PROG, run))
