"""The collector's first threshold is raised for a live node, never lowered."""

import gc

import pytest

from ring.live.gctune import FIRST_THRESHOLD, raise_first_threshold


@pytest.fixture
def thresholds():
    saved = gc.get_threshold()
    yield
    gc.set_threshold(*saved)


def test_the_first_threshold_is_raised_and_the_others_kept(thresholds):
    gc.set_threshold(700, 11, 12)
    raise_first_threshold()
    assert gc.get_threshold() == (FIRST_THRESHOLD, 11, 12)


def test_a_higher_threshold_or_a_disabled_collector_is_left_alone(thresholds):
    gc.set_threshold(FIRST_THRESHOLD * 2, 10, 10)
    raise_first_threshold()
    assert gc.get_threshold() == (FIRST_THRESHOLD * 2, 10, 10)
    gc.set_threshold(0, 10, 10)
    raise_first_threshold()
    assert gc.get_threshold() == (0, 10, 10)
