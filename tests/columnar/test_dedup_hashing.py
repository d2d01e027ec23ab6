import zlib

import pyarrow as pa

from beam_pipelines.columnar.dedup import deduplicate
from beam_pipelines.columnar.hashing import partition_ids
from beam_pipelines.columnar.hashing import stable_hash


def _table(ids, uris, positions):
    return pa.table(
        {
            'event_id': ids,
            '_uri': uris,
            '_pos': pa.array(positions, pa.int64()),
            'value': list(range(len(ids))),
        }
    )


def test_first_copy_by_input_position_is_kept():
    a = _table(['x', 'y', 'x'], ['f2', 'f2', 'f1'], [5, 6, 9])
    b = _table(['x', 'z'], ['f1', 'f1'], [3, 4])
    unique, duplicates = deduplicate([a, b])
    assert duplicates == 2
    rows = {r['event_id']: (r['_uri'], r['_pos']) for r in unique.to_pylist()}
    assert rows == {'x': ('f1', 3), 'y': ('f2', 6), 'z': ('f1', 4)}


def test_no_duplicates_returns_input():
    t = _table(['a', 'b'], ['f', 'f'], [0, 1])
    assert deduplicate([t]) == (t, 0)
    assert deduplicate([]) == (None, 0)


def test_hash_is_stable_and_slice_independent():
    ids = pa.array(['alpha', 'beta', '', None, 'é' * 40])
    h = stable_hash(ids)
    assert list(h[1:]) == list(stable_hash(ids.slice(1)))
    assert h[2] == h[3]  # null hashes like ''
    # Fixed values: partitioning must not change between releases or processes.
    assert [int(v) for v in stable_hash(pa.array(['alpha', 'beta']))] == [
        zlib.crc32(b'alpha'),
        zlib.crc32(b'beta'),
    ]
    parts = partition_ids(pa.array([f'id-{i}' for i in range(10_000)]), num_partitions=8)
    counts = [int((parts == p).sum()) for p in range(8)]
    assert min(counts) > 1000
