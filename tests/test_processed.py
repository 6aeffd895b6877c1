"""``processed`` as ranges per file (hpckit.processor.processed): the same answers as the set of per-chunk
keys it replaces, in a size that does not grow with the chunk count."""

from __future__ import annotations

import pickle
import random

from hpckit.processor.accumulate import accumulate, tree_accumulate
from hpckit.processor.processed import ProcessedChunks


def _key(start, stop, filename="/data/a.root", dataset="ds"):
    return (dataset, filename, "Events", start, stop, f"uuid-{filename}")


def _chunks(n, size=10, **kw):
    return [_key(i * size, (i + 1) * size, **kw) for i in range(n)]


def test_answers_as_the_set_of_keys_whatever_the_merge_order():
    keys = _chunks(50) + _chunks(7, filename="/data/b.root") + _chunks(3, dataset="other")
    rng = random.Random(5)
    for _ in range(5):
        shuffled = keys[:]
        rng.shuffle(shuffled)
        merged = accumulate(ProcessedChunks.of(k) for k in shuffled)
        assert len(merged) == len(keys)
        assert all(k in merged for k in keys)
        # not covered: a range past the end, one straddling two files' worth, another file or uuid
        assert _key(500, 510) not in merged and _key(495, 505) not in merged
        assert _key(0, 10, filename="/data/c.root") not in merged
        assert ("ds", "/data/a.root", "Events", 0, 10, "another-uuid") not in merged
        assert merged == ProcessedChunks(keys) == set(keys)
        assert sorted(merged) == sorted([_key(0, 500), _key(0, 70, filename="/data/b.root"),
                                         _key(0, 30, dataset="other")])


def test_a_missing_chunk_stays_a_hole():
    keys = _chunks(20)
    merged = tree_accumulate((ProcessedChunks.of(k) for i, k in enumerate(keys) if i != 13), 19, 4)
    assert _key(130, 140) not in merged and _key(120, 130) in merged and _key(140, 150) in merged
    assert list(merged) == [_key(0, 130), _key(140, 200)] and len(merged) == 19


def test_size_does_not_grow_with_the_chunk_count():
    small = pickle.dumps(accumulate(ProcessedChunks.of(k) for k in _chunks(10)))
    large = pickle.dumps(accumulate(ProcessedChunks.of(k) for k in _chunks(10_000)))
    as_set = pickle.dumps(set(_chunks(10_000)))
    assert len(large) <= len(small) + 8 and len(as_set) > 100 * len(large)


def test_an_old_set_merges_in_and_unpickled_file_keys_share_their_strings():
    merged = ProcessedChunks.of(_key(0, 10))
    merged += {_key(10, 20)}  # a checkpoint written before ranges
    assert list(merged) == [_key(0, 20)] and len(merged) == 2
    a, b = (pickle.loads(pickle.dumps(ProcessedChunks.of(_key(i, i + 1)))) for i in range(2))
    (fa,), (fb,) = a.ranges, b.ranges
    assert fa[1] is fb[1] and fa[3] is fb[3]


def test_a_chunk_merged_twice_is_named():
    keys = _chunks(6)
    merged = accumulate(ProcessedChunks.of(k) for k in [*keys, keys[2]])
    assert merged.doubled == _key(20, 30) and len(merged) == 7
    assert pickle.loads(pickle.dumps(merged)).doubled == _key(20, 30)
    assert accumulate(ProcessedChunks.of(k) for k in keys).doubled is None
