"""The shards bench's ceiling row: scikit-learn alone in one process, then two at once, alternating."""

from bench.jobs import REPEAT
from bench.shards import raw_scaling


def test_raw_scaling_times_one_and_two_forked_scorers_in_turn():
    one, two = raw_scaling(rows=3_001)  # an odd count: the halves still cover every row
    assert len(one) == len(two) == max(1, REPEAT)
    assert all(s > 0 for s in one + two)
