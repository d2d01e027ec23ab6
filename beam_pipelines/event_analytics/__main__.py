"""``python -m beam_pipelines.event_analytics``: see :mod:`beam_pipelines.event_analytics`."""

from beam_pipelines import cli
from beam_pipelines.event_analytics.config import PIPELINE_NAME
from beam_pipelines.event_analytics.launcher import run

if __name__ == '__main__':
    cli.configure_logging()
    cli.exit_now(cli.main(PIPELINE_NAME, run))
