"""The run report in headless Chromium (Debian's chromium and chromium-driver, driven by
Selenium): it loads with no console errors, every chart is drawn, data cannot inject markup,
and a screenshot shows the charts."""

from __future__ import annotations

import datetime as dt
import io
import json
import os
import shutil

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from beam_pipelines import event_analytics
from beam_pipelines.generate_events import GeneratorConfig
from beam_pipelines.generate_events import generate_records
from beam_pipelines.generate_events import write_events
from beam_pipelines.observability.report import write_report
from tests.conftest import service_unavailable

pytestmark = pytest.mark.e2e

CHROMIUM = shutil.which('chromium') or '/usr/bin/chromium'
CHROMEDRIVER = shutil.which('chromedriver') or '/usr/bin/chromedriver'
HOSTILE = '<script>document.title="pwned"</script><img src=x onerror=alert(1)>'


@pytest.fixture(scope='module')
def browser():
    if not (os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER)):
        service_unavailable('headless Chromium', FileNotFoundError(CHROMIUM))
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        '--headless=new',
        '--no-sandbox',
        '--disable-gpu',
        '--disable-dev-shm-usage',
        '--disable-background-networking',
        '--disable-component-update',
        '--disable-sync',
        '--no-first-run',
        '--window-size=1200,1600',
    ):
        options.add_argument(flag)
    options.set_capability('goog:loggingPrefs', {'browser': 'ALL'})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture(scope='module')
def report(tmp_path_factory):
    tmp = tmp_path_factory.mktemp('report')
    records, _ = generate_records(GeneratorConfig(events=4000, seed=8, entities=15))
    path = tmp / 'events.jsonl'
    write_events(records, str(path), 'jsonl')
    out = tmp / 'out'
    argv = ['--input', str(path), '--output_dir', str(out), '--detect_anomalies', '--quality']
    argv += ['--lineage_file', str(tmp / 'lineage.jsonl')]
    assert event_analytics.run(argv) == 0
    return out


def test_the_report_loads_without_errors_and_draws_every_chart(browser, report, tmp_path):
    browser.get((report / 'report.html').as_uri())
    errors = [e for e in browser.get_log('browser') if e['level'] == 'SEVERE']
    assert errors == []
    sections = [h.text for h in browser.find_elements('tag name', 'h2')]
    for title in ('Records per stage', 'Dead letters', 'Events per window', 'Lag', 'Data quality'):
        assert any(s.startswith(title) for s in sections), (title, sections)
    assert 'Lineage' in sections
    charts = browser.find_elements('css selector', 'svg.chart')
    assert len(charts) >= 5  # stages, dead letters, windows, lag, the pipeline graph
    for chart in charts:
        assert chart.size['width'] > 100 and chart.size['height'] > 50
    assert browser.find_elements('css selector', 'svg.chart polyline.series')
    assert len(browser.find_elements('css selector', 'svg.chart rect.node')) >= 8

    # Keep the screenshot; check it shows the charts (the bars' colour) on a drawn page.
    png = browser.get_screenshot_as_png()
    (tmp_path / 'report.png').write_bytes(png)
    image = Image.open(io.BytesIO(png)).convert('RGB')
    assert image.size[0] >= 1000
    colours = image.getcolors(maxcolors=1 << 20)
    total = sum(n for n, _ in colours)
    white = sum(n for n, c in colours if c == (255, 255, 255))
    bars = sum(n for n, c in colours if c == (0x4E, 0x79, 0xA7))
    assert white < 0.97 * total and bars > 500


def test_data_cannot_inject_markup(browser, tmp_path):
    out = tmp_path / 'out'
    (out / 'dead_letter').mkdir(parents=True)
    summary = {'pipeline': HOSTILE, 'input': HOSTILE, 'counts': {'read': 1, 'dead_letter': 1}}
    summary |= {'balanced': True, 'finished_at': '2026-12-01T00:00:00Z'}
    (out / 'run_summary.json').write_text(json.dumps(summary))
    envelope = {'stage': 'parse', 'error_type': HOSTILE, 'error_message': HOSTILE}
    envelope['payload'] = HOSTILE
    (out / 'dead_letter' / 'part-0.jsonl').write_text(json.dumps(envelope) + '\n')
    write_report(str(out))
    browser.get((out / 'report.html').as_uri())
    assert browser.find_elements('tag name', 'script') == []
    assert browser.find_elements('tag name', 'img') == []
    assert browser.title.startswith('<script>')  # shown as text, not run
    assert HOSTILE in browser.find_element('tag name', 'body').text


def test_the_report_counts_are_the_summarys(report):
    summary = json.loads((report / 'run_summary.json').read_text())
    page = (report / 'report.html').read_text()
    for name in ('read', 'valid', 'dead_letter', 'duplicates'):
        assert f'<td>{name}</td><td>{summary["counts"][name]:,}</td>' in page


def test_anomalies_are_marked_on_the_windows_chart(tmp_path):
    out = tmp_path / 'out'
    for part in ('aggregates', 'anomalies'):
        (out / part).mkdir(parents=True)
    t0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    starts = [t0 + dt.timedelta(minutes=i) for i in range(10)]
    pq.write_table(
        pa.table({'window_start': starts, 'count': [5] * 9 + [50]}),
        out / 'aggregates' / 'p.parquet',
    )
    pq.write_table(
        pa.table({'event_time': [starts[9], starts[3]], 'is_anomaly': [True, False]}),
        out / 'anomalies' / 'p.parquet',
    )
    (out / 'run_summary.json').write_text(json.dumps({'counts': {'read': 1}, 'balanced': True}))
    page = (out / write_report(str(out)).rsplit('/', 1)[1]).read_text()
    assert '10 windows; 1 anomalies' in page and page.count('class="marker"') == 1
