"""The collector during a batch run: older objects frozen, the run's garbage collected."""

import gc

import pytest

from bulkops.engine.collection import older_objects_frozen


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
