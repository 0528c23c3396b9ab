"""A train run whose jobs are taken as done: its metrics and the champion's evaluation written as the
jobs would, then its records (``loop.record_train``). For tests of what the records say, not of training."""

from __future__ import annotations

import json

from driftloop import loop
from driftloop.config import ApprovalMode
from driftloop.records import TrainRecord


def recorded_train_run(stores: loop.Stores, run_id: str, hour: int, accuracy: float, *, champion: float = 0.5,
                       stage: str = "stage-2", approval: ApprovalMode = "automatic") -> TrainRecord:
    """Train run ``run_id`` at ``hour`` on ``stage``, its model scoring ``accuracy`` and the champion ``champion``."""
    plan = loop.plan_run(stores, "train", run_id=run_id, time=f"2026-12-01T{hour:02d}:00:00+00:00",
                         start={"train_data": f"data/{stage}/train", "val_data": f"data/{stage}/val"})
    stores.objects.put_bytes(f"{plan.uri['model']}/metrics.json", json.dumps({
        "val_accuracy": accuracy, "val_loss": 0.7, "epochs": 3, "best_epoch": 3, "wall_time_s": 1.0, "n_train": 10,
        "n_val": 5, "n_params": 100, "classes": ["a", "b"], "trained_on": stage, "config": {}}).encode())
    stores.objects.put_bytes(f"{plan.uri['champion_eval']}/evaluation.json",
                             json.dumps({"n": 5, "classes": ["a", "b"], "accuracy": champion}).encode())
    return loop.record_train(stores, plan, approval=approval)
