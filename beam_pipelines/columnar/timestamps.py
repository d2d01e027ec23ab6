"""Event-time normalisation: RFC 3339 strings, epoch seconds and epoch milliseconds to UTC.

Rules (the same for the vectorised path and the row-level path, which tests keep equal):

* a number, or a string holding only a number, is an epoch value: seconds, or milliseconds when
  its absolute value is above 1e11 (1e11 seconds is the year 5138, so no real seconds value is
  that large);
* any other string must be RFC 3339 with ``Z`` or a numeric offset (a naive time is ambiguous
  and rejected); fractions up to nanoseconds are accepted and truncated to microseconds;
* the result must lie in [1970-01-01, 2100-01-01) UTC.
"""

from __future__ import annotations

import datetime as dt
import math
import re

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

__all__ = [
    'EPOCH_MS_THRESHOLD',
    'MAX_TIMESTAMP_US',
    'MIN_TIMESTAMP_US',
    'NUMBER',
    'NUMBER_RE',
    'TIMESTAMP_TYPE',
    'normalise_timestamps',
    'parse_timestamp',
]

TIMESTAMP_TYPE = pa.timestamp('us', tz='UTC')
EPOCH_MS_THRESHOLD = 1e11
MIN_TIMESTAMP_US = 0
MAX_TIMESTAMP_US = 4102444800 * 1_000_000  # 2100-01-01T00:00:00Z

NUMBER_RE = r'^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$'
_RFC3339_RE = r'^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d{1,9})?([Zz]|[+-]\d{2}:\d{2})$'
# ASCII: Python's \d also takes other scripts' digits (and float() reads them), where Arrow's
# RE2 and cast do not; the row-level twin must refuse what the vectorised path refuses.
NUMBER = re.compile(NUMBER_RE, re.ASCII)  # the row-level matcher of NUMBER_RE
_RFC3339 = re.compile(_RFC3339_RE, re.ASCII)
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)

MSG_MISSING = 'timestamp: missing'
MSG_FORMAT = 'timestamp: not RFC 3339 with Z or an offset, epoch seconds or epoch milliseconds'
MSG_RANGE = 'timestamp: outside [1970-01-01, 2100-01-01)'


_EPOCH_LIMIT = 1e15  # far outside the valid range (ms in the year 33658), safe to scale to int64


def _epoch_to_us(x: float) -> int | None:
    if not math.isfinite(x):
        return None
    if abs(x) >= _EPOCH_LIMIT:
        return MAX_TIMESTAMP_US  # out of range, reported as such
    if abs(x) > EPOCH_MS_THRESHOLD:
        return round(x * 1_000)
    return round(x * 1_000_000)


def parse_timestamp(value: object) -> dt.datetime:
    """Row-level twin of :func:`normalise_timestamps`.

    Args:
        value: a raw timestamp (str, int, float or datetime).

    Returns:
        An aware UTC datetime.

    Raises:
        ValueError: with one of the module's messages when the value is not a valid timestamp.
    """
    if value is None:
        raise ValueError(MSG_MISSING)
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            raise ValueError(MSG_FORMAT)
        us = round((value - _EPOCH).total_seconds() * 1_000_000)
    elif isinstance(value, bool):
        raise ValueError(MSG_FORMAT)
    elif isinstance(value, int | float):
        us = _epoch_to_us(float(value))
    elif isinstance(value, str):
        text = value.strip()
        if NUMBER.match(text):
            us = _epoch_to_us(float(text))
        elif _RFC3339.match(text):
            us = _rfc3339_to_us(text)
        else:
            raise ValueError(MSG_FORMAT)
    else:
        raise ValueError(MSG_FORMAT)
    if us is None:
        raise ValueError(MSG_FORMAT)
    if not MIN_TIMESTAMP_US <= us < MAX_TIMESTAMP_US:
        raise ValueError(MSG_RANGE)
    return _EPOCH + dt.timedelta(microseconds=us)


def _rfc3339_to_us(text: str) -> int | None:
    # datetime.fromisoformat takes at most 6 fraction digits: truncate to microseconds first,
    # exactly as the vectorised cast does.
    text = re.sub(r'(\.\d{6})\d+', r'\1', text.replace('z', 'Z').replace('t', 'T'))
    try:
        parsed = dt.datetime.fromisoformat(text)
    except ValueError:
        return None
    delta = parsed - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def normalise_timestamps(values: pa.Array) -> tuple[pa.TimestampArray, dict[int, str]]:
    """Vectorised timestamp normalisation.

    Args:
        values: raw timestamps as a string, integer or floating-point array.

    Returns:
        ``(timestamps, errors)``: a ``timestamp[us, UTC]`` array with nulls where invalid, and a
        mapping from row index to an error message for each invalid row.
    """
    n = len(values)
    us = np.zeros(n, dtype=np.int64)
    ok = np.zeros(n, dtype=bool)
    errors: dict[int, str] = {}
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    if pa.types.is_null(values.type):
        values = pa.nulls(n, pa.string())
    present = np.asarray(values.is_valid().to_numpy(zero_copy_only=False), dtype=bool)
    if pa.types.is_integer(values.type) or pa.types.is_floating(values.type):
        # Unsafe: an integer beyond 2**53 is far out of range either way; a safe cast would fail.
        _numeric_to_us(values.cast(pa.float64(), safe=False), present, us, ok)
    elif pa.types.is_string(values.type) or pa.types.is_large_string(values.type):
        text = pc.utf8_trim_whitespace(values)
        numeric = _mask(pc.match_substring_regex(text, NUMBER_RE)) & present
        rfc = _mask(pc.match_substring_regex(text, _RFC3339_RE)) & present
        if numeric.any():
            nums = pc.cast(pc.if_else(pa.array(numeric), text, None), pa.float64())
            _numeric_to_us(nums, numeric, us, ok)
        if rfc.any():
            _rfc3339_array_to_us(text, rfc, us, ok)
    for i in np.flatnonzero(~ok):
        errors[int(i)] = MSG_MISSING if not present[i] else MSG_FORMAT
    in_range = (us >= MIN_TIMESTAMP_US) & (us < MAX_TIMESTAMP_US)
    for i in np.flatnonzero(ok & ~in_range):
        errors[int(i)] = MSG_RANGE
    valid = ok & in_range
    out = pa.array(us, type=pa.int64(), mask=~valid).cast(TIMESTAMP_TYPE)
    return out, errors


def _mask(bools: pa.Array) -> np.ndarray:
    return np.asarray(bools.fill_null(False).to_numpy(zero_copy_only=False), dtype=bool)


def _numeric_to_us(nums: pa.Array, where: np.ndarray, us: np.ndarray, ok: np.ndarray) -> None:
    x = np.asarray(nums.fill_null(0.0).to_numpy(zero_copy_only=False), dtype=np.float64)
    finite = np.isfinite(x) & where
    # Bound before scaling so that huge values cannot overflow int64.
    huge = finite & (np.abs(x) >= _EPOCH_LIMIT)
    finite &= ~huge
    x = np.where(finite, x, 0.0)
    scaled = np.where(np.abs(x) > EPOCH_MS_THRESHOLD, x * 1_000.0, x * 1_000_000.0)
    us[finite] = np.round(scaled[finite]).astype(np.int64)
    us[huge] = MAX_TIMESTAMP_US  # out of range, reported as such
    ok[finite | huge] = True


def _rfc3339_array_to_us(text: pa.Array, where: np.ndarray, us: np.ndarray, ok: np.ndarray):
    subset = pc.if_else(pa.array(where), text, None)
    try:
        parsed = pc.cast(subset, pa.timestamp('ns', tz='UTC'))
        as_us = np.asarray(
            parsed.cast(pa.int64()).fill_null(0).to_numpy(zero_copy_only=False), dtype=np.int64
        )
        us[where] = as_us[where] // 1_000
        ok[where] = True
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        # One impossible date (month 13, or outside the ns range) fails the whole cast; fall
        # back to the row-level parser for this array only, which is rare.
        for i in np.flatnonzero(where):
            parsed_us = _rfc3339_to_us(text[int(i)].as_py())
            if parsed_us is not None:
                us[i] = parsed_us
                ok[i] = True
