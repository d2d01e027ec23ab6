"""The local continuous mode's rerunner: one translation, every run executed afresh."""

from __future__ import annotations

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions

from beam_pipelines.event_analytics.rerun import Rerunner


def _copy(_, src, dst):
    with open(src) as f, open(dst, 'a') as out:
        out.write(f.read())


def test_each_run_executes_the_pipeline_again_on_one_translation(tmp_path):
    src, dst = tmp_path / 'in.txt', tmp_path / 'out.txt'
    options = PipelineOptions([])
    p = beam.Pipeline(options=options)
    _ = p | 'Start' >> beam.Impulse() | 'Copy' >> beam.Map(_copy, str(src), str(dst))
    rerunner = Rerunner(p, options)
    assert rerunner.translated_once
    for text in ('a', 'b', 'c'):
        src.write_text(text)
        rerunner.run().wait_until_finish()
        if text == 'a':
            translated = rerunner._runner.translated
    assert dst.read_text() == 'abc'  # the input is read anew on every run
    assert rerunner._runner.translated is translated


def test_other_runners_run_the_pipeline_as_usual():
    options = PipelineOptions(['--runner', 'PortableRunner'])
    assert not Rerunner(beam.Pipeline(options=options), options).translated_once


def test_pipelines_for_the_bundle_based_runner_run_as_usual():
    from apache_beam.testing.test_stream import TestStream

    options = PipelineOptions([])
    p = beam.Pipeline(options=options)
    _ = p | TestStream().add_elements([1]) | beam.Map(lambda x: x)
    assert not Rerunner(p, options).translated_once
