import gc
from collections.abc import Iterator

import pytest

from arbstr.app import tune_gc


@pytest.fixture
def restore_gc() -> Iterator[None]:
    before = gc.get_threshold()
    gc.unfreeze()  # apps started by earlier tests in this process froze their heap
    yield
    gc.unfreeze()
    gc.set_threshold(*before)


@pytest.mark.usefixtures("restore_gc")
def test_tune_gc_freezes_startup_objects_and_raises_the_young_threshold() -> None:
    tune_gc(12_345)
    assert gc.get_threshold()[0] == 12_345
    assert gc.get_freeze_count() > 0


@pytest.mark.usefixtures("restore_gc")
def test_zero_leaves_the_collector_alone() -> None:
    before = gc.get_threshold()
    tune_gc(0)
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == 0
