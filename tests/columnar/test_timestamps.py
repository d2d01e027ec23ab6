import datetime as dt

import pyarrow as pa
import pytest
from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st

from beam_pipelines.columnar import timestamps
from beam_pipelines.columnar.timestamps import normalise_timestamps
from beam_pipelines.columnar.timestamps import parse_timestamp

UTC = dt.UTC
BASE = dt.datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    'raw, expected',
    [
        ('2024-05-01T12:00:00Z', BASE),
        ('2024-05-01T14:00:00+02:00', BASE),
        ('2024-05-01t07:00:00-05:00', BASE),
        ('2024-05-01T12:00:00.123456789Z', BASE + dt.timedelta(microseconds=123456)),
        (1714564800, BASE),
        (1714564800.5, BASE + dt.timedelta(milliseconds=500)),
        (1714564800000, BASE),
        ('1714564800', BASE),
        (' 1714564800123 ', BASE + dt.timedelta(milliseconds=123)),
    ],
)
def test_formats_agree_between_row_and_vector_paths(raw, expected):
    assert parse_timestamp(raw) == expected
    typ = pa.string() if isinstance(raw, str) else None
    out, errors = normalise_timestamps(pa.array([raw], type=typ))
    assert errors == {}
    assert out[0].as_py() == expected


@pytest.mark.parametrize(
    'raw, message',
    [
        ('2024-05-01T12:00:00', timestamps.MSG_FORMAT),  # naive: ambiguous
        ('yesterday', timestamps.MSG_FORMAT),
        ('2024-13-01T12:00:00Z', timestamps.MSG_FORMAT),
        (-5, timestamps.MSG_RANGE),
        (99_999_999_999_999, timestamps.MSG_RANGE),
        (None, timestamps.MSG_MISSING),
        ('1e400', timestamps.MSG_FORMAT),
    ],
)
def test_invalid_timestamps_are_explained(raw, message):
    with pytest.raises(ValueError, match=message.split(':')[0]):
        parse_timestamp(raw)
    typ = pa.string() if isinstance(raw, str) or raw is None else None
    out, errors = normalise_timestamps(pa.array([raw], type=typ))
    assert out[0].as_py() is None
    assert errors == {0: message}


def test_milliseconds_threshold():
    # 1e11 seconds is the year 5138: anything above is milliseconds.
    with pytest.raises(ValueError, match='outside'):
        parse_timestamp(1e11)  # seconds: the year 5138
    assert parse_timestamp(100_000_000_001) == dt.datetime(1973, 3, 3, 9, 46, 40, 1000, tzinfo=UTC)


_values = st.one_of(
    st.integers(min_value=-(10**15), max_value=10**15),
    st.floats(allow_nan=True, allow_infinity=True),
    st.datetimes(
        min_value=dt.datetime(1960, 1, 1),
        max_value=dt.datetime(2200, 1, 1),
        timezones=st.sampled_from([UTC, dt.timezone(dt.timedelta(hours=5, minutes=30))]),
    ).map(lambda d: d.isoformat()),
    st.text(max_size=30),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(_values, min_size=1, max_size=20))
def test_vectorised_equals_row_level(values):
    """The property that lets validation run vectorised: both paths give the same verdict."""
    strings = [v if isinstance(v, str) else repr(v) for v in values]
    out, errors = normalise_timestamps(pa.array(strings, pa.string()))
    for i, raw in enumerate(strings):
        try:
            expected = parse_timestamp(raw)
        except ValueError:
            expected = None
        assert out[i].as_py() == expected, raw
        assert (i in errors) == (expected is None), raw
