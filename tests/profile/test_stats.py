"""Profiles merged from any split of the records equal the profile of all of them, and agree
with plain, exact computations (quantiles within the sketch's 1%, distinct within KMV's error)."""

from __future__ import annotations

import math
import random

import numpy as np
from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st

from beam_pipelines.profile.stats import DatasetProfile
from beam_pipelines.profile.stats import FieldProfile

VALUE = st.one_of(
    st.none(),
    st.integers(-1000, 1000),
    st.floats(-1e6, 1e6, allow_nan=False),
    st.text(max_size=6),
    st.booleans(),
)
RECORD = st.dictionaries(st.sampled_from(['a', 'b', 'c', 'd']), VALUE, max_size=4)


def profile_of(records):
    p = DatasetProfile()
    p.add_records(records)
    return p


@settings(max_examples=60, deadline=None)
@given(st.lists(RECORD, max_size=40), st.lists(st.integers(0, 40), max_size=4))
def test_any_split_merges_to_the_single_pass_profile(records, cuts):
    cuts = sorted({min(c, len(records)) for c in cuts})
    parts, start = [], 0
    for cut in [*cuts, len(records)]:
        parts.append(records[start:cut])
        start = cut
    merged = DatasetProfile()
    for part in random.Random(1).sample(parts, len(parts)):
        merged.merge(profile_of(part))
    assert merged.to_dict() == profile_of(records).to_dict()


@settings(max_examples=60, deadline=None)
@given(st.lists(RECORD, min_size=1, max_size=40))
def test_counts_types_and_extremes_are_exact(records):
    got = profile_of(records).to_dict()
    assert got['rows'] == len(records)
    for name, field in got['fields'].items():
        values = [r.get(name) for r in records]
        present = [v for v in values if v is not None]
        assert field['nulls'] == len(values) - len(present)
        assert field['null_ratio'] == field['nulls'] / len(records)
        assert sum(field['types'].values()) == len(present)
        assert field['distinct_estimate'] == len({repr(v) for v in present})  # exact below k
        numbers = [float(v) for v in present if type(v) in (int, float)]
        if numbers:
            assert field['numeric']['min'] == min(numbers)
            assert field['numeric']['max'] == max(numbers)
            assert math.isclose(field['numeric']['mean'], sum(numbers) / len(numbers), abs_tol=1e-6)
            assert sum(field['numeric']['histogram']['counts']) == len(numbers)


def test_quantiles_are_within_the_sketchs_accuracy():
    rng = np.random.default_rng(3)
    values = rng.lognormal(3, 1, 20_000)
    f = FieldProfile()
    f.add(values.tolist())
    numeric = f.numeric_summary()
    for q in (0.05, 0.25, 0.5, 0.75, 0.95, 0.99):
        exact = float(np.quantile(values, q, method='inverted_cdf'))
        assert abs(numeric[f'p{round(q * 100)}'] - exact) <= 0.011 * exact


def test_distinct_values_beyond_the_sketch_are_estimated_closely():
    f = FieldProfile()
    for start in range(0, 50_000, 10_000):
        f.add([f'user-{i}' for i in range(start, start + 10_000)] * 2)
    assert abs(f.distinct() - 50_000) / 50_000 < 0.1


def test_fields_that_appear_later_count_earlier_rows_as_nulls():
    p = profile_of([{'a': 1}, {'a': 2}])
    p.merge(profile_of([{'a': 3, 'b': 'x'}]))
    fields = p.to_dict()['fields']
    assert fields['b']['nulls'] == 2 and fields['b']['present'] == 1
    assert fields['a']['nulls'] == 0
    assert fields['b']['top_values'] == [['x', 1]]
