"""``python -m beam_pipelines.profile``: see :mod:`beam_pipelines.profile.launcher`."""

from beam_pipelines import cli
from beam_pipelines.profile.launcher import PROG
from beam_pipelines.profile.launcher import run

if __name__ == '__main__':
    cli.configure_logging()
    cli.exit_now(cli.main(PROG, run))
