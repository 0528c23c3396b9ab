"""The approval gate in the loop's own code (``loop.record_train``, ``approve``, ``reject``), on both registries.

The train runs' jobs are stood in for by their outputs (the challenger's metrics, the champion's
evaluation on the new validation set), so no model is trained: what is checked is which package
gets which status, and what serving reads (``train/latest``).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
from support.train_runs import recorded_train_run

from driftloop import loop
from driftloop.config import ApprovalMode
from driftloop.errors import UserError
from driftloop.layout import ParameterNames
from driftloop.local.status import Hints, status_lines
from driftloop.records import TrainRecord, read_record
from driftloop.registry import ModelRegistry
from driftloop.stores.objects import LocalObjectStore
from driftloop.stores.params import SqliteParameterStore


@pytest.fixture
def stores(tmp_path: Path, registry: ModelRegistry) -> loop.Stores:
    return loop.Stores(objects=LocalObjectStore(tmp_path / "store"),
                       params=SqliteParameterStore(tmp_path / "loop.sqlite"), names=ParameterNames(),
                       registry=registry)


def train(stores: loop.Stores, hour: int, accuracy: float, *, champion: float = 0.5,
          approval: ApprovalMode = "manual") -> TrainRecord:
    """Train run ``train-<hour>``, manual approval unless told otherwise."""
    return recorded_train_run(stores, f"train-{hour}", hour, accuracy, champion=champion, approval=approval)


def serving(stores: loop.Stores) -> str | None:
    record = read_record(stores.params, stores.names.train_latest, TrainRecord)
    return None if record is None else record.run_id


def test_manual_approval_holds_serving_until_a_person_approves_and_rejecting_keeps_the_champion(
        stores: loop.Stores) -> None:
    assert stores.registry is not None
    first = train(stores, 10, 0.8, approval="automatic")
    assert (first.promoted, first.approval, serving(stores)) == (True, "Approved", "train-10")

    pending = train(stores, 11, 0.9, champion=0.8)
    assert (pending.promoted, pending.approval) == (False, "PendingManualApproval")
    assert serving(stores) == "train-10"
    attempt = status_lines(stores.params, stores.names, Hints("T", "S", "approve {run_id} ({package_id})"), runs=0)
    assert attempt[1].endswith(": PENDING APPROVAL, the current model serves until then (challenger 0.900 >= "
                               "champion 0.800 of train-10 on the new validation set)")
    assert attempt[2] == f"  approve train-11 ({pending.package_id})"

    promoted = loop.approve(stores, "train-11", "checked the explanations")
    assert (promoted.promoted, promoted.approval, promoted.package_id) == (True, "Approved", pending.package_id)
    assert serving(stores) == "train-11"
    assert read_record(stores.params, stores.names.train_last_attempt, TrainRecord) == promoted

    train(stores, 12, 0.95, champion=0.9)
    rejected = loop.reject(stores, "train-12", "trained on mislabelled batches")
    assert (rejected.status, rejected.reason) == ("Rejected", "trained on mislabelled batches")
    assert serving(stores) == "train-11"
    train(stores, 13, 0.6, champion=0.9)  # loses: champion/challenger rejects it, no one is asked

    packages = stores.registry.packages()
    assert [(p.run_id, p.status) for p in packages] == [
        ("train-10", "Approved"), ("train-11", "Approved"), ("train-12", "Rejected"), ("train-13", "Rejected")]
    assert packages[3].reason == "challenger 0.600 < champion 0.900 on the new validation set: kept champion"
    # The records match the registry: serving only ever pointed at Approved packages, each named by its id.
    by_id = {p.package_id: p for p in packages}
    served = [TrainRecord.from_json(v.value) for v in stores.params.history(stores.names.train_latest)]
    assert [(r.run_id, by_id[r.package_id or ""].run_id, by_id[r.package_id or ""].status) for r in served] == [
        ("train-10", "train-10", "Approved"), ("train-11", "train-11", "Approved")]
    attempts = [TrainRecord.from_json(v.value) for v in stores.params.history(stores.names.train_last_attempt)]
    assert [(r.run_id, r.approval) for r in attempts] == [
        ("train-10", "Approved"), ("train-11", "PendingManualApproval"), ("train-11", "Approved"),
        ("train-12", "PendingManualApproval"), ("train-12", "Rejected"), ("train-13", "Rejected")]


def test_an_approval_out_of_order_is_refused_with_what_to_do(stores: loop.Stores) -> None:
    train(stores, 10, 0.8, approval="automatic")
    train(stores, 11, 0.9, champion=0.8)
    train(stores, 12, 0.95, champion=0.8)

    with pytest.raises(loop.NotApprovable, match="v2 of train run train-11 is older than v3 of train run train-12 "
                                                 r"\(PendingManualApproval\): approve that one, or reject it first"):
        loop.approve(stores, "train-11", "ok")
    with pytest.raises(loop.NotApprovable, match="v1 of train run train-10 is the current model: nothing to promote"):
        loop.approve(stores, "train-10", "ok")
    loop.approve(stores, "train-12", "ok")
    with pytest.raises(loop.NotApprovable, match="v2 of train run train-11 is older than v3, run the current model "
                                                 "train-12"):
        loop.approve(stores, "train-11", "ok")
    loop.reject(stores, "train-11", "superseded")
    with pytest.raises(loop.NotApprovable, match="was rejected \\(superseded\\): train a new model instead"):
        loop.approve(stores, "train-11", "ok")
    with pytest.raises(loop.NotApprovable, match="is Approved, not pending approval"):
        loop.reject(stores, "train-12", "no")
    assert serving(stores) == "train-12"


def test_an_approval_killed_before_the_pointers_moved_is_finished_by_approving_again(stores: loop.Stores) -> None:
    """The package is Approved first (as in the console), serving still on the champion: approve promotes it."""
    assert stores.registry is not None
    train(stores, 10, 0.8, approval="automatic")
    train(stores, 11, 0.9, champion=0.8)
    stores.registry.set_status("train-11", "Approved", "in the console")
    assert serving(stores) == "train-10"
    assert loop.approve(stores, "train-11", "again").reason.endswith("; approved: in the console")
    assert serving(stores) == "train-11"


def test_manual_approval_without_a_registry_is_refused(tmp_path: Path) -> None:
    stores = loop.Stores(objects=LocalObjectStore(tmp_path / "store"),
                         params=SqliteParameterStore(tmp_path / "loop.sqlite"), names=ParameterNames())
    with pytest.raises(UserError, match="manual approval needs a model registry"):
        train(stores, 10, 0.8)
    assert serving(stores) is None


def test_a_reason_longer_than_a_record_keeps_is_refused_and_one_from_the_console_is_cut(stores: loop.Stores) -> None:
    """A person's reason ends up in the records (Parameter Store's 4 KB): ``--reason`` is bounded, and a longer
    ApprovalDescription given in the console is kept cut to the same length."""
    assert stores.registry is not None
    train(stores, 10, 0.8, approval="automatic")
    train(stores, 11, 0.9, champion=0.8)
    with pytest.raises(UserError, match=f"give 1 to {loop.REASON_MAX}"):
        loop.approve(stores, "train-11", "x" * (loop.REASON_MAX + 1))
    with pytest.raises(UserError, match=f"give 1 to {loop.REASON_MAX}"):
        loop.reject(stores, "train-11", " ")
    stores.registry.set_status("train-11", "Approved", "y" * 1024)
    record = loop.approve(stores, "train-11", "fine")
    assert record.reason.endswith("; approved: " + "y" * (loop.REASON_MAX - 1) + "…")


def test_a_rejection_made_in_the_registry_is_recorded_as_reject_records_it(stores: loop.Stores) -> None:
    """On AWS a person rejects in the console and the promote Lambda calls ``rejected_in_registry``; locally
    ``driftloop reject`` calls ``reject``: ``train/last-attempt`` reads alike, and a repeated or creation
    event writes nothing."""
    assert stores.registry is not None
    train(stores, 10, 0.8, approval="automatic")
    by_hand = train(stores, 11, 0.9, champion=0.8)
    loop.reject(stores, "train-11", "mislabelled")
    assert read_record(stores.params, stores.names.train_last_attempt, TrainRecord) == replace(
        by_hand, approval="Rejected", reason=f"{by_hand.reason}; rejected: mislabelled")

    in_console = train(stores, 12, 0.9, champion=0.8)
    package = stores.registry.set_status("train-12", "Rejected", "mislabelled")
    recorded = loop.rejected_in_registry(stores, package.package_id)
    assert recorded == replace(in_console, approval="Rejected", reason=f"{in_console.reason}; rejected: mislabelled")
    assert read_record(stores.params, stores.names.train_last_attempt, TrainRecord) == recorded
    history = len(stores.params.history(stores.names.train_last_attempt))
    assert loop.rejected_in_registry(stores, package.package_id) is None  # the event again

    loser = train(stores, 13, 0.6, champion=0.8)  # registered Rejected by champion/challenger
    assert loop.rejected_in_registry(stores, loser.package_id or "") is None
    assert len(stores.params.history(stores.names.train_last_attempt)) == history + 1  # train-13's own record
    assert serving(stores) == "train-10"
    serving_package = stores.registry.set_status("train-10", "Rejected", "in the console")
    with pytest.raises(loop.NotApprovable, match="is the current model's: its rejection in the registry was not"):
        loop.rejected_in_registry(stores, serving_package.package_id)
    assert serving(stores) == "train-10"
