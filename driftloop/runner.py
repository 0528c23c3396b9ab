"""The local runner: executes the pipeline definitions of ``driftloop.pipelines`` on one machine.

State lives in a work folder: an object store (``store/``, the S3 layout of ``driftloop.layout``) and
a SQLite parameter store (``parameters.sqlite``, the SSM names). Components run in-process through
the same ``RUNNERS`` their container entrypoints use, so a local run exercises the component code
that runs on AWS, without re-importing TensorFlow for every step.

A run writes its artifacts under ``runs/<pipeline>/<run_id>/`` and only then its record in the
parameter store: a run killed at any step leaves the store pointing at whole artifacts only.
"""

from __future__ import annotations

import importlib
import json
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from driftloop.components.entrypoint import ComponentError, Invocation, Runner
from driftloop.config import DecisionPolicy, DriftConfig, ExplainConfig, ProcessingConfig, TrainingConfig
from driftloop.decision import RetrainDecision, decide_promotion, decide_retrain
from driftloop.drift_report import DriftReport
from driftloop.layout import SPLITS, ParameterNames, artifact_prefix, data_prefix
from driftloop.pipelines import (
    DRIFT_REPORT_FILE,
    EVALUATION_FILE,
    SERVE_PIPELINE,
    TRAIN_METRICS_FILE,
    TRAIN_PIPELINE,
    Component,
    Pipeline,
    Step,
)
from driftloop.records import ServeRecord, TrainRecord
from driftloop.shards import read_summary
from driftloop.stores.objects import LocalObjectStore, ObjectStore
from driftloop.stores.params import ParameterStore, SqliteParameterStore

StepHook = Callable[[Pipeline, Step], None]


@dataclass(frozen=True)
class Settings:
    """Component settings for local runs (on AWS the same dataclasses come from cdk.json)."""

    processing: ProcessingConfig = field(default_factory=ProcessingConfig)
    training: TrainingConfig = field(default_factory=TrainingConfig)
    drift: DriftConfig = field(default_factory=DriftConfig)
    explain: ExplainConfig = field(default_factory=ExplainConfig)
    policy: DecisionPolicy = field(default_factory=DecisionPolicy)

    def for_step(self, step: Step) -> dict[str, Any]:
        if step.component is Component.PROCESSING:
            return self.processing.to_dict()
        if step.component is Component.ALGORITHM:
            return self.training.to_dict() if step.mode == "train" else {}
        if step.component is Component.MONITORING:
            return self.drift.to_dict()
        return self.explain.to_dict()


@dataclass(frozen=True)
class RunResult:
    run_id: str
    artifacts: dict[str, str]  # artifact -> object-store key prefix
    local: dict[str, Path]  # artifact -> local folder (valid while the run's work folder lives)
    skipped_steps: tuple[str, ...]


@dataclass(frozen=True)
class ServeOutcome:
    record: ServeRecord
    report: DriftReport
    decision: RetrainDecision
    retrain: TrainRecord | None
    evaluation: dict[str, Any] | None  # accuracy/loss when the batch was labelled

    def summary(self) -> str:
        lines = [self.record.summary()]
        if self.retrain is not None:
            lines.append(self.retrain.summary())
        return "\n".join(lines)


def component_runner(component: Component, mode: str) -> Runner:
    """The in-process runner behind a component's container entrypoint."""
    module = importlib.import_module(f"driftloop.components.{component.value}")
    runners: Mapping[str, Runner] = module.RUNNERS
    return runners[mode]


def utc_now() -> datetime:
    return datetime.now(UTC)


def make_run_id(pipeline: str, when: datetime) -> str:
    return f"{pipeline}-{when.strftime('%Y%m%dT%H%M%S')}"


class LocalSystem:
    """The whole system on one machine: stores in ``workdir`` and the pipelines run in-process."""

    def __init__(
        self,
        workdir: Path,
        *,
        settings: Settings | None = None,
        objects: ObjectStore | None = None,
        params: ParameterStore | None = None,
        on_step: StepHook | None = None,
    ) -> None:
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.settings = settings or Settings()
        self.objects = objects or LocalObjectStore(self.workdir / "store")
        self.params = params or SqliteParameterStore(self.workdir / "parameters.sqlite")
        self.names = ParameterNames()
        self.on_step = on_step

    # ----------------------------------------------------------------- data
    def import_dataset(self, folder: Path, name: str) -> dict[str, str]:
        """Copy ``folder/{train,val,test}`` into the store as ``data/<name>/<split>``."""
        keys = {}
        for split in SPLITS:
            if (folder / split).is_dir():
                keys[split] = data_prefix(name, split)
                if not self.objects.list(keys[split]):
                    self.objects.upload_dir(folder / split, keys[split])
        if not keys:
            raise ComponentError(f"{folder} has none of {SPLITS}: expected {folder}/train/<class>/<image>")
        return keys

    def import_batch(self, folder: Path, name: str) -> str:
        key = f"batches/{name}"
        if not self.objects.list(key):
            self.objects.upload_dir(folder, key)
        return key

    # ------------------------------------------------------------- pipelines
    def run_pipeline(
        self,
        pipeline: Pipeline,
        run_id: str,
        *,
        external: Mapping[str, str],
        resolved: Mapping[str, str],
        scratch: Path,
        extra_settings: Mapping[str, Mapping[str, Any]] | None = None,
    ) -> RunResult:
        """Run every step in order; inputs come from the store, outputs go back to it after each step."""
        missing = set(pipeline.external) - set(external)
        if missing:
            raise ComponentError(f"the {pipeline.name} pipeline needs {sorted(missing)} to start")
        keys: dict[str, str] = {**external, **resolved}
        local: dict[str, Path] = {}
        skipped: list[str] = []
        for step in pipeline.steps:
            if any(a not in keys for a in step.only_if):
                skipped.append(step.name)
                continue
            if self.on_step is not None:
                self.on_step(pipeline, step)
            inputs = {channel: self._materialize(artifact, keys[artifact], scratch, local)
                      for channel, artifact in step.inputs}
            outputs = {channel: scratch / "out" / artifact for channel, artifact in step.outputs}
            for folder in outputs.values():
                folder.mkdir(parents=True, exist_ok=True)
            settings = {**self.settings.for_step(step), **(extra_settings or {}).get(step.name, {})}
            component_runner(step.component, step.mode)(
                Invocation(mode=step.mode, inputs=inputs, outputs=outputs, settings=settings)
            )
            for _channel, artifact in step.outputs:
                key = artifact_prefix(pipeline.name, run_id, artifact)  # type: ignore[arg-type]
                self.objects.upload_dir(scratch / "out" / artifact, key)
                keys[artifact] = key
                local[artifact] = scratch / "out" / artifact
        produced = {a: keys[a] for a in pipeline.produced() if a in keys}
        return RunResult(run_id=run_id, artifacts=produced, local=local, skipped_steps=tuple(skipped))

    def _materialize(self, artifact: str, key: str, scratch: Path, local: dict[str, Path]) -> Path:
        if artifact not in local:
            folder = scratch / "in" / artifact
            if self.objects.download_dir(key, folder) == 0:
                raise ComponentError(f"{artifact}: nothing stored under {self.objects.uri(key)}")
            local[artifact] = folder
        return local[artifact]

    # ----------------------------------------------------------------- train
    def current_model(self) -> TrainRecord | None:
        text = self.params.get_optional(self.names.train_latest)
        return TrainRecord.from_json(text) if text else None

    def train(self, train_key: str, val_key: str, *, stage: str | None = None,
              when: datetime | None = None) -> TrainRecord:
        """Run the train pipeline on store prefixes; promote the model if it beats the champion."""
        when = when or utc_now()
        run_id = make_run_id("train", when)
        champion = self.current_model()
        resolved = {"champion_model": self.objects.key_from_uri(champion.model)} if champion else {}
        trained_on = stage or self.objects.uri(train_key)
        with tempfile.TemporaryDirectory(prefix="driftloop-train-") as tmp:
            result = self.run_pipeline(
                TRAIN_PIPELINE, run_id,
                external={"raw_train": train_key, "raw_val": val_key},
                resolved=resolved,
                scratch=Path(tmp),
                extra_settings={"learn_reference": {"trained_on": trained_on, "run_id": run_id},
                                "train_model": {"trained_on": trained_on}},
            )
            metrics = json.loads((result.local["model"] / TRAIN_METRICS_FILE).read_text())
            champion_eval = None
            if "champion_eval" in result.local:
                champion_eval = json.loads((result.local["champion_eval"] / EVALUATION_FILE).read_text())
            promotion = decide_promotion(metrics, champion_eval)
        record = TrainRecord(
            run_id=run_id,
            time=when.isoformat(),
            train_data=self.objects.uri(train_key),
            val_data=self.objects.uri(val_key),
            stage=stage,
            model=self.objects.uri(result.artifacts["model"]),
            detector=self.objects.uri(result.artifacts["detector"]),
            explainer=self.objects.uri(result.artifacts["explainer"]),
            val_accuracy=promotion.challenger_accuracy,
            val_loss=float(metrics["val_loss"]),
            champion_val_accuracy=promotion.champion_accuracy,
            promoted=promotion.promote,
            reason=promotion.reason,
            champion_run_id=champion.run_id if champion else None,
        )
        # Every artifact is stored: now, and only now, the pointers.
        self.params.put(self.names.train_last_attempt, record.to_json())
        if record.promoted:
            self.params.put(self.names.train_latest, record.to_json())
        return record

    # ----------------------------------------------------------------- serve
    def serve(self, batch: Path | str, *, when: datetime | None = None, retrain: bool = True) -> ServeOutcome:
        """Run the serve pipeline on a batch (a store prefix, or a local folder imported first).

        With ``retrain``, a drift decision to retrain runs the train pipeline before returning.
        """
        when = when or utc_now()
        run_id = make_run_id("serve", when)
        batch_key = batch if isinstance(batch, str) else self.import_batch(Path(batch), run_id)
        current = self.current_model()
        if current is None:
            raise ComponentError(
                f"no current model in {self.names.train_latest}: run the train pipeline first "
                "(driftloop train --data DIR --workdir W)"
            )
        resolved = {name: self.objects.key_from_uri(getattr(current, name))
                    for name in ("model", "detector", "explainer")}
        with tempfile.TemporaryDirectory(prefix="driftloop-serve-") as tmp:
            result = self.run_pipeline(
                SERVE_PIPELINE, run_id, external={"raw_batch": batch_key}, resolved=resolved, scratch=Path(tmp)
            )
            report = DriftReport.read(result.local["drift_report"] / DRIFT_REPORT_FILE)
            evaluation_path = result.local["predictions"] / EVALUATION_FILE
            evaluation = json.loads(evaluation_path.read_text()) if evaluation_path.exists() else None
            summary = read_summary(result.local["batch_shards"])
        decision = decide_retrain(
            report, batch_source=batch_key, policy=self.settings.policy,
            runs_since_retrain=self._serve_runs_since_retrain(),
        )
        retrained = None
        if decision.retrain and retrain:
            assert decision.train_data is not None and decision.val_data is not None
            retrained = self.train(decision.train_data, decision.val_data, stage=decision.stage, when=when)
        record = ServeRecord(
            run_id=run_id,
            time=when.isoformat(),
            input=self.objects.uri(batch_key),
            model_run_id=current.run_id,
            reference_trained_on=report.detector.trained_on,
            drift_report=self.objects.uri(result.artifacts["drift_report"]),
            predictions=self.objects.uri(result.artifacts["predictions"]),
            explanations=self.objects.uri(result.artifacts["explanations"]),
            is_drift=report.is_drift,
            statistic=report.statistic,
            threshold=report.threshold,
            n_images=summary.n_images,
            n_skipped=summary.n_skipped,
            retrain=decision.retrain,
            retrain_reason=decision.reason,
            retrain_run_id=retrained.run_id if retrained else None,
        )
        self.params.put(self.names.serve_latest, record.to_json())
        return ServeOutcome(record=record, report=report, decision=decision, retrain=retrained,
                            evaluation=evaluation)

    def _serve_runs_since_retrain(self) -> int | None:
        if self.params.get_optional(self.names.serve_latest) is None:
            return None
        history = [ServeRecord.from_json(v.value) for v in self.params.history(self.names.serve_latest)]
        for count, record in enumerate(reversed(history)):
            if record.retrain:
                return count
        return None
