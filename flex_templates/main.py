"""The flex templates' Python file (``FLEX_TEMPLATE_PYTHON_PY_FILE``): runs the launcher of the
template named by ``BEAM_PIPELINES_TEMPLATE`` (set in the image) with its fixed flags and the
parameters Dataflow passes as ``--name=value``."""

import os
import sys

from beam_pipelines import cli
from beam_pipelines.__main__ import main
from beam_pipelines.deploy.flex_metadata import get

if __name__ == '__main__':
    cli.configure_logging()
    template = get(os.environ['BEAM_PIPELINES_TEMPLATE'])
    sys.exit(main([template.launcher, *template.fixed_args, *sys.argv[1:]]))
