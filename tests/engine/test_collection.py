"""The collector during a batch run: older objects frozen, the run's garbage collected."""

import gc

import pytest

from bulkops.engine.collection import (
    YOUNG_THRESHOLD,
    fewer_young_collections,
    older_objects_frozen,
)


@pytest.fixture
def nothing_frozen():
    gc.unfreeze()
    yield
    gc.unfreeze()


class Cycle:
    def __init__(self):
        self.me = self


def test_what_the_process_held_is_frozen_for_the_block_only(nothing_frozen):
    held = Cycle()
    with older_objects_frozen():
        assert gc.get_freeze_count() > 0
        assert not any(o is held for o in gc.get_objects())  # not walked by collections
    assert gc.get_freeze_count() == 0


def test_the_runs_own_cyclic_garbage_is_still_collected(nothing_frozen):
    with older_objects_frozen():
        made = Cycle()
        found = [o for o in gc.get_objects() if o is made]
        assert found  # made in the block: among what the collector walks
        del made, found
        assert gc.collect() > 0


def test_a_process_that_froze_objects_itself_keeps_them_frozen(nothing_frozen):
    gc.freeze()
    later = Cycle()  # made after the process's own freeze
    with older_objects_frozen():
        # Nothing more is frozen (the count itself may drop: frozen objects can still be
        # freed when their last reference goes, by other threads too).
        assert any(o is later for o in gc.get_objects())
    assert gc.get_freeze_count() > 0  # and the process's own freeze is not undone


def test_nothing_is_frozen_while_the_collector_is_off(nothing_frozen):
    gc.disable()
    try:
        with older_objects_frozen():
            assert gc.get_freeze_count() == 0
    finally:
        gc.enable()


def test_an_exception_unfreezes_too(nothing_frozen):
    with pytest.raises(ZeroDivisionError), older_objects_frozen():
        1 / 0  # noqa: B018
    assert gc.get_freeze_count() == 0


@pytest.fixture
def default_thresholds():
    before = gc.get_threshold()
    gc.set_threshold(700, 10, 10)
    yield
    gc.set_threshold(*before)


def test_young_collections_are_rarer_in_the_block_only(default_thresholds):
    with fewer_young_collections():
        assert gc.get_threshold() == (YOUNG_THRESHOLD, 10, 10)
    assert gc.get_threshold() == (700, 10, 10)


@pytest.mark.parametrize("young", [0, YOUNG_THRESHOLD * 2])
def test_a_higher_threshold_or_collection_off_is_kept(default_thresholds, young):
    gc.set_threshold(young, 10, 10)
    with fewer_young_collections():
        assert gc.get_threshold() == (young, 10, 10)
    assert gc.get_threshold() == (young, 10, 10)


def test_an_exception_restores_the_thresholds(default_thresholds):
    with pytest.raises(ZeroDivisionError), fewer_young_collections():
        1 / 0  # noqa: B018
    assert gc.get_threshold() == (700, 10, 10)


@pytest.mark.django_db
def test_run_batch_runs_with_the_older_objects_frozen(nothing_frozen, tools):
    from bulkops.engine import run_batch
    from project.catalog.serializers import ProductSerializer
    from tests.factories import ProductItemFactory

    frozen = []
    result = run_batch(
        serializer_class=ProductSerializer,
        rows=[ProductItemFactory(sku="A"), ProductItemFactory(sku="B")],
        mode="create",
        on_progress=lambda stage, done: frozen.append(gc.get_freeze_count()),
    )

    assert result.succeeded == 2
    assert frozen and all(frozen)
    assert gc.get_freeze_count() == 0


@pytest.mark.django_db
def test_run_batch_runs_with_rarer_young_collections(default_thresholds, tools):
    from bulkops.engine import run_batch
    from project.catalog.serializers import ProductSerializer
    from tests.factories import ProductItemFactory

    seen = []
    run_batch(
        serializer_class=ProductSerializer,
        rows=[ProductItemFactory(sku="A")],
        mode="create",
        on_progress=lambda stage, done: seen.append(gc.get_threshold()[0]),
    )

    assert seen and set(seen) == {YOUNG_THRESHOLD}
    assert gc.get_threshold() == (700, 10, 10)
