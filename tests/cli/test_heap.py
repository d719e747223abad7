"""FrozenHeap: the heap frozen while a command runs, given back after, a caller's own left alone."""

from __future__ import annotations

import gc

import pytest

from orket_pipeline.cli._heap import FrozenHeap


def test_objects_made_after_entry_are_frozen_by_freeze_and_all_given_back_on_exit() -> None:
    assert gc.get_freeze_count() == 0
    with FrozenHeap() as heap:
        at_entry = gc.get_freeze_count()
        assert at_entry > 0
        kept = [[] for _ in range(100)]  # tracked objects made after entry
        heap.freeze()
        assert gc.get_freeze_count() >= at_entry + len(kept)
    assert gc.get_freeze_count() == 0


def test_the_heap_is_given_back_when_the_command_raises() -> None:
    with pytest.raises(KeyError), FrozenHeap():
        raise KeyError("x")
    assert gc.get_freeze_count() == 0


def test_a_callers_own_freeze_is_left_as_it_was() -> None:
    gc.freeze()
    try:
        before = gc.get_freeze_count()
        with FrozenHeap() as heap:
            made = [[] for _ in range(100)]
            heap.freeze()
            assert gc.get_freeze_count() == before  # nothing frozen for the command
        assert gc.get_freeze_count() == before  # nor unfrozen after it
        assert made
    finally:
        gc.unfreeze()
