"""Process-wide tuning (``gateway.tuning``): the full-collection pacer holds automatic full GCs
back for an interval, then restores; the trimmer gives freed C memory back periodically."""

from __future__ import annotations

import gc

import trio
import trio.testing

from gateway.tuning import (
    FullCollectionPacer,
    MemoryTrimmer,
    release_free_memory,
    stop_collecting_for_exit,
)


async def test_a_full_collection_holds_the_next_automatic_one_for_the_interval() -> None:
    before = gc.get_threshold()
    pacer = FullCollectionPacer(interval=0.4)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(pacer.run)
        await trio.testing.wait_all_tasks_blocked()
        gc.collect()
        assert pacer.held
        assert pacer.collections == 1 and pacer.seconds_max > 0
        assert gc.get_threshold()[:2] == before[:2]
        assert gc.get_threshold()[2] > 10**6, "automatic full collections must be off"
        gc.collect(1)  # a young collection does not count
        assert pacer.collections == 1
        await trio.sleep(0.2)
        assert pacer.held, "released before the interval passed"
        with trio.fail_after(2):
            while pacer.held:
                await trio.sleep(0.05)
        assert gc.get_threshold() == before
        gc.collect()
        assert pacer.held and pacer.collections == 2
        nursery.cancel_scope.cancel()
    assert not pacer.held
    assert gc.get_threshold() == before, "leaving must restore the thresholds"
    assert pacer._on_gc not in gc.callbacks


async def test_interval_zero_leaves_cpython_alone() -> None:
    before = gc.get_threshold()
    pacer = FullCollectionPacer(interval=0)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(pacer.run)
        await trio.testing.wait_all_tasks_blocked()
        gc.collect()
        assert not pacer.held and pacer.collections == 0
        assert gc.get_threshold() == before
        nursery.cancel_scope.cancel()


async def test_told_to_stop_the_process_collects_no_more_even_when_the_pacer_leaves() -> None:
    pacer = FullCollectionPacer(interval=30)
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(pacer.run)
            await trio.testing.wait_all_tasks_blocked()
            gc.collect()
            assert pacer.held
            stop_collecting_for_exit()
            assert not gc.isenabled()
            nursery.cancel_scope.cancel()  # the service closing: the pacer restores thresholds
        assert not pacer.held
        assert not gc.isenabled(), "restoring the thresholds must not switch collection on"
    finally:
        gc.enable()


async def test_freed_memory_is_given_back_every_interval() -> None:
    trimmer = MemoryTrimmer(interval=0.05)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(trimmer.run)
        with trio.fail_after(5):
            while trimmer.trims < 2 and release_free_memory():
                await trio.sleep(0.01)
        nursery.cancel_scope.cancel()
    assert trimmer.trims >= 2 if release_free_memory() else trimmer.trims == 0
