"""Run ids that cannot collide, and a run's claim on its prefix, on both object stores."""

from __future__ import annotations

import re
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import pytest

from driftloop import loop, plan_checks
from driftloop.layout import RUN_ID_PATTERN, ParameterNames, make_run_id, run_claim_key
from driftloop.stores.objects import ObjectStore
from driftloop.stores.params import ParameterStore

SECOND = datetime(2026, 12, 1, 10, 5, 7, tzinfo=UTC)
# SageMaker's job-name rule: what a run id may have to fit into.
SAGEMAKER_NAME = r"[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}"


def stores(objects: ObjectStore, params: ParameterStore) -> loop.Stores:
    return loop.Stores(objects=objects, params=params, names=ParameterNames())


def test_run_ids_made_in_the_same_second_differ_and_sort_by_time() -> None:
    same_second = {make_run_id("serve", SECOND) for _ in range(1000)}
    assert len(same_second) == 1000
    later = make_run_id("serve", SECOND + timedelta(seconds=1))
    assert all(run_id < later for run_id in same_second)
    for run_id in (*same_second, later, make_run_id("train", SECOND)):
        match = RUN_ID_PATTERN.fullmatch(run_id)
        assert match is not None and plan_checks.RUN_ID.fullmatch(run_id)
        assert re.fullmatch(SAGEMAKER_NAME, run_id)
    assert RUN_ID_PATTERN.fullmatch(later)["time"] == "20261201T100508"  # type: ignore[index]


def test_a_run_id_is_claimed_once_and_an_other_run_with_it_is_refused(objects: ObjectStore,
                                                                      params: ParameterStore) -> None:
    store = stores(objects, params)
    loop.claim_run(store, "serve", run_id="serve-1", time=SECOND.isoformat())
    loop.claim_run(store, "serve", run_id="serve-1", time=SECOND.isoformat())  # the same run, again: its own
    with pytest.raises(loop.RunExists, match=r"run id 'serve-1' is taken: .*runs/serve/serve-1/claim.json"):
        loop.claim_run(store, "serve", run_id="serve-1", time=(SECOND + timedelta(seconds=1)).isoformat())
    loop.claim_run(store, "train", run_id="serve-1", time=SECOND.isoformat())  # another pipeline's prefix
    assert objects.list("runs") == [run_claim_key("serve", "serve-1"), run_claim_key("train", "serve-1")]


def test_of_runs_racing_for_one_id_exactly_one_gets_it(objects: ObjectStore, params: ParameterStore) -> None:
    store = stores(objects, params)

    def claim(second: int) -> bool:
        try:
            loop.claim_run(store, "train", run_id="train-x", time=(SECOND + timedelta(seconds=second)).isoformat())
        except loop.RunExists:
            return False
        return True

    with ThreadPoolExecutor(8) as pool:
        assert list(pool.map(claim, range(16))).count(True) == 1


@pytest.mark.parametrize("run_id", ["a/b", "serve\n1", "", "r" * 81, "../x"])
def test_a_run_id_that_is_no_execution_name_is_refused_at_plan_time(objects: ObjectStore, params: ParameterStore,
                                                                    run_id: str) -> None:
    with pytest.raises(loop.InvalidInput, match="must be 1 to 80 letters, digits"):
        loop.plan_run(stores(objects, params), "train", run_id=run_id, time=SECOND.isoformat(),
                      start={"train_data": "data/original/train", "val_data": "data/original/val"})


HOUR = timedelta(hours=1)


def test_a_lease_is_held_until_released_or_expired(objects: ObjectStore, params: ParameterStore) -> None:
    store = stores(objects, params)
    first = loop.take_lease(store, "retrain", holder="train-a", now=SECOND, ttl=HOUR)
    assert first.taken and first.lease.generation == 1
    held = loop.take_lease(store, "retrain", holder="train-b", now=SECOND + HOUR / 2, ttl=HOUR)
    assert not held.taken and held.lease == first.lease
    assert not loop.release_lease(store, "retrain", holder="train-b")  # not b's to let go
    assert loop.release_lease(store, "retrain", holder="train-a")
    after_release = loop.take_lease(store, "retrain", holder="train-b", now=SECOND + HOUR / 2, ttl=HOUR)
    assert after_release.taken and after_release.lease.generation == 2
    # b crashes: its lease expires, and c takes over; b's late release changes nothing.
    taken_over = loop.take_lease(store, "retrain", holder="train-c", now=SECOND + 2 * HOUR, ttl=HOUR)
    assert taken_over.taken and taken_over.lease.generation == 3
    assert not loop.release_lease(store, "retrain", holder="train-b")
    assert not loop.take_lease(store, "retrain", holder="train-d", now=SECOND + 2 * HOUR, ttl=HOUR).taken


@pytest.mark.parametrize("expired", [False, True], ids=["free", "taking-over-an-expired-lease"])
def test_of_many_racing_takers_exactly_one_holds_the_lease(objects: ObjectStore, params: ParameterStore,
                                                           expired: bool) -> None:
    store = stores(objects, params)
    if expired:
        assert loop.take_lease(store, "retrain", holder="crashed", now=SECOND - 2 * HOUR, ttl=HOUR).taken

    def take(i: int) -> loop.LeaseResult:
        return loop.take_lease(store, "retrain", holder=f"train-{i}", now=SECOND, ttl=HOUR)

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(take, range(16)))
    winners = [r.lease for r in results if r.taken]
    assert len(winners) == 1
    assert all(r.lease == winners[0] for r in results)  # every loser names the one holder


def test_numbered_run_ids_repeat_from_one_system_to_the_next_and_still_sort_by_time() -> None:
    from driftloop.local.runner import numbered_run_ids

    first, again = numbered_run_ids(), numbered_run_ids()
    ids = [first("serve", SECOND), first("train", SECOND), first("serve", SECOND)]
    assert ids == [again("serve", SECOND), again("train", SECOND), again("serve", SECOND)]
    assert ids == ["serve-20261201T100507-00000001", "train-20261201T100507-00000002",
                   "serve-20261201T100507-00000003"]
    assert all(RUN_ID_PATTERN.fullmatch(run_id) for run_id in ids)
    with pytest.raises(ValueError, match="does not fit in 8 hex digits"):
        make_run_id("serve", SECOND, suffix=16**8)
