"""Running one built pipeline again and again (incremental runs ``--every`` interval), paying
for its translation once.

``pipeline.run()`` on the DirectRunner costs about two seconds per call for the flagship before
any data moves, which is most of a tick in the local continuous mode: the DirectRunner first
tries to start the Prism runner (a download, which fails offline), then visits every transform
to choose a runner, then the pipeline is translated to its portable form; both passes call
Beam's DoFn introspection (``userstate.get_dofn_specs``: an ``inspect.signature`` for every
method of every DoFn, ~1,700 times a run here). None of that changes between ticks.

So on the local runners a :class:`Rerunner` runs the pipeline on Beam's ``FnApiRunner`` (the
runner the DirectRunner picks for a bounded pipeline without Prism), built as the DirectRunner
builds it, translates it on the first run, and gives every later run the same portable
pipeline (``run_via_runner_api``): each run still unpickles fresh DoFns and executes every
stage, so the results are those of ``pipeline.run()``. Other runners, and pipelines the
DirectRunner would not give the FnApiRunner (TestStream, Pub/Sub, processing-time timers), get
``pipeline.run()``. (Where Prism can be downloaded, the DirectRunner would use it; these reruns
stay on the FnApiRunner, the runner the tests run on.)
"""

from __future__ import annotations

import apache_beam as beam
from apache_beam.io.gcp.pubsub import ReadFromPubSub
from apache_beam.io.gcp.pubsub import WriteToPubSub
from apache_beam.options.pipeline_options import StandardOptions
from apache_beam.options.pipeline_options_context import scoped_pipeline_options
from apache_beam.pipeline import PipelineVisitor
from apache_beam.portability.api import beam_provision_api_pb2
from apache_beam.runners.portability.fn_api_runner import fn_runner
from apache_beam.runners.portability.portable_runner import JobServiceHandle
from apache_beam.runners.runner import PipelineResult
from apache_beam.testing.test_stream import TestStream
from apache_beam.transforms import userstate
from apache_beam.transforms.timeutil import TimeDomain

from beam_pipelines.event_analytics.config import LOCAL_RUNNERS

__all__ = ['Rerunner']

# The local runners that run a batch pipeline on the FnApiRunner when it allows.
_FN_API_RUNNERS = tuple(r for r in LOCAL_RUNNERS if r != 'BundleBasedDirectRunner')


class _NeedsOtherRunner(PipelineVisitor):
    """What makes the DirectRunner choose its bundle-based runner over the FnApiRunner
    (its own ``_FnApiRunnerSupportVisitor``): TestStream, Pub/Sub, processing-time timers."""

    found = False

    def enter_composite_transform(self, applied):
        if isinstance(applied.transform, (ReadFromPubSub, WriteToPubSub)):
            self.found = True

    def visit_transform(self, applied):
        transform = applied.transform
        if isinstance(transform, TestStream):
            self.found = True
        if isinstance(transform, beam.ParDo) and userstate.is_stateful_dofn(transform.dofn):
            _, timers = userstate.get_dofn_specs(transform.dofn)
            if any(t.time_domain == TimeDomain.REAL_TIME for t in timers):
                self.found = True


def _fn_api_runs(pipeline: beam.Pipeline) -> bool:
    visitor = _NeedsOtherRunner()
    pipeline.visit(visitor)
    return not visitor.found


class _KeepsTranslation(fn_runner.FnApiRunner):
    """The FnApiRunner, keeping the portable pipeline of its first run for the next ones."""

    translated = None

    def run_via_runner_api(self, pipeline_proto, options):
        if self.translated is None:
            self.translated = pipeline_proto
        return super().run_via_runner_api(self.translated, options)


class Rerunner:
    """Runs ``pipeline`` (built once) each time :meth:`run` is called."""

    def __init__(self, pipeline: beam.Pipeline, options):
        self._pipeline = pipeline
        self._options = options
        runner = str(options.view_as(StandardOptions).runner or 'DirectRunner')
        self._runner = None
        if runner.split('.')[-1] in _FN_API_RUNNERS and _fn_api_runs(pipeline):
            # As the DirectRunner builds it: the options go to the workers' provision info.
            encoded = JobServiceHandle.encode_pipeline_options(options.get_all_options())
            info = fn_runner.ExtendedProvisionInfo(
                beam_provision_api_pb2.ProvisionInfo(pipeline_options=encoded)
            )
            self._runner = _KeepsTranslation(provision_info=info)

    @property
    def translated_once(self) -> bool:
        """Whether later runs reuse the first run's translation."""
        return self._runner is not None

    def run(self) -> PipelineResult:
        if self._runner is not None and self._runner.translated is not None:
            with scoped_pipeline_options(self._options):  # as pipeline.run() sets them
                return self._runner.run_via_runner_api(self._runner.translated, self._options)
        if self._runner is not None:
            self._pipeline.runner = self._runner  # the first run goes through pipeline.run()
        return self._pipeline.run()
