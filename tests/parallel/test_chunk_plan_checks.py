"""chunk_plan names a bad argument (a negative n gave a negative chunk; 0 divided by zero)."""

import pytest

from fracsgd.parallel import chunk_plan


@pytest.mark.parametrize(
    ("args", "name"),
    [
        ((-3, 100, 50, 450, 2), "n"),
        ((10, 0, 50, 450, 1), "per_item"),
        ((10, 100, 50, 450, 0), "shards"),
        ((10, 100, -1, 450, 1), "fixed"),
        ((10, 100, 50, 0, 1), "cap"),
    ],
)
def test_bad_arguments_are_named(args, name):
    with pytest.raises(ValueError, match=f"^{name} must be"):
        chunk_plan(*args)


def test_the_rule_is_unchanged():
    assert chunk_plan(10, per_item=100, fixed=50, cap=450, shards=2) == (6, 2)
    assert chunk_plan(10, per_item=100.0, fixed=50, cap=None) == (10, 1)
