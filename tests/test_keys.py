"""Named key streams: distinct, and stable where published results depend on them."""

import itertools

import jax
import numpy as np
import pytest

from fractaljax import keys


def _data(k):
    return tuple(np.asarray(jax.random.key_data(k)).ravel().tolist())


def test_streams_are_distinct_and_their_first_draws_too():
    for seed in (0, 1, 7):
        streams = {n: keys.stream(seed, n) for n in keys.STREAMS}
        assert len({_data(k) for k in streams.values()}) == len(streams)
        # Consumers fold in a step, class or example index: the first indices must not meet.
        derived = [
            (n, i, _data(jax.random.fold_in(k, i))) for n, k in streams.items() for i in range(4)
        ]
        for (n1, i1, a), (n2, i2, b) in itertools.combinations(derived, 2):
            assert a != b, (n1, i1, n2, i2)
    assert _data(keys.stream(0, "data")) != _data(keys.stream(1, "data"))


def test_published_streams_keep_their_values():
    # The 1p-frac results in docs/results were made with these keys.
    root = jax.random.key(3)
    for name, const in (("init", 0), ("data", 1), ("step", 2), ("eval", 3), ("onepfrac", 0x1F5C)):
        assert _data(keys.stream(3, name)) == _data(jax.random.fold_in(root, const))


def test_unknown_stream_names_the_known_ones():
    with pytest.raises(KeyError, match="init"):
        keys.stream(0, "nope")
