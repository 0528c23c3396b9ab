"""The local runner: executes the pipeline definitions of ``driftloop.pipelines`` on one machine.

State lives in a work folder: an object store (``store/``, the S3 layout of ``driftloop.layout``) and
a SQLite parameter store (``parameters.sqlite``, the SSM names). Components run in-process through
the same ``RUNNERS`` their container entrypoints use, so a local run exercises the component code
that runs on AWS, without re-importing TensorFlow for every step. A serve step set to scale out
(``Settings.instances``) runs as SageMaker runs it on that many instances: one worker process per
host, each with its host identity, its share of the sharded inputs (``driftloop.hosts``) and its
share of this machine's cores, as N instances would each have their own (``HostWorkers``).

A run writes its artifacts under ``runs/<pipeline>/<run_id>/`` and only then its record in the
parameter store: a run killed at any step leaves the store pointing at whole artifacts only.
"""

from __future__ import annotations

import contextlib
import ctypes
import itertools
import logging
import multiprocessing
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from concurrent import futures
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Final

from driftloop import loop
from driftloop.components.entrypoint import Invocation
from driftloop.components.pipeline import component_runner, run_step, runs, step_invocation, step_settings
from driftloop.config import Settings
from driftloop.decision import RetrainDecision
from driftloop.drift_report import DriftReport
from driftloop.errors import UserError
from driftloop.files import image_name_reason
from driftloop.hosts import Hosts, core_shares, shard_by_key
from driftloop.layout import SPLITS, ParameterNames, PipelineName, batch_prefix, data_prefix, make_run_id
from driftloop.local.console import make_workdir
from driftloop.local.timings import Stopwatch
from driftloop.pipelines import BATCH_START_FIELD, SERVE_PIPELINE, TRAIN_PIPELINE, Component, Pipeline, Step
from driftloop.plan_checks import prefix_problem
from driftloop.records import ServeRecord, TrainRecord, read_record
from driftloop.registry import SqliteModelRegistry
from driftloop.scores import Evaluation
from driftloop.stores.objects import LocalObjectStore, ObjectStore
from driftloop.stores.params import ParameterStore, SqliteParameterStore

StepHook = Callable[[Pipeline, Step], None]
log = logging.getLogger(__name__)
RunIds = Callable[[PipelineName, datetime], str]  # a new run's id, from its pipeline and start time
PR_SET_PDEATHSIG: Final = 1  # linux/prctl.h
# How long a retrain's lease lasts if its process dies without letting it go (a local retrain takes minutes).
RETRAIN_LEASE_TTL: Final = timedelta(hours=6)


@dataclass(frozen=True)
class ServeOutcome:
    record: ServeRecord
    report: DriftReport
    decision: RetrainDecision
    retrain: TrainRecord | None
    evaluation: Evaluation | None  # accuracy/loss when the batch was labelled

    def summary(self) -> str:
        lines = [self.record.summary()]
        if self.retrain is not None:
            lines.append(self.retrain.summary())
        return "\n".join(lines)


def run_on_host(component: Component, invocation: Invocation) -> object:
    """One host of a scaled-out step, in a worker process (its log lines go where the parent's stderr goes)."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    return component_runner(component, invocation.mode)(invocation)


def die_with_parent(parent: int, *, use_prctl: bool = True) -> None:
    """Make this process end when process ``parent`` does, however it ends (also by kill -9): on Linux
    the kernel sends SIGKILL (``prctl(PR_SET_PDEATHSIG)``); elsewhere, or if that call fails, a daemon
    thread checks every second whether the parent is still this process's parent.

    (The kernel's signal comes when the *thread* that started this process ends: HostWorkers are
    started and shut down within one pipeline run, on the thread that runs it.)
    """
    if use_prctl and sys.platform == "linux":
        with contextlib.suppress(OSError, AttributeError):
            libc = ctypes.CDLL(None, use_errno=True)
            if libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) == 0:
                if os.getppid() != parent:  # the parent died before the call: no signal will come
                    os._exit(1)
                return
    threading.Thread(target=_exit_when_orphaned, args=(parent,), name="die-with-parent", daemon=True).start()


def _exit_when_orphaned(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(1)
    os._exit(1)


def _start_host_worker(cores: tuple[int, ...], parent: int) -> None:
    """A host worker's first acts: die with the runner (a killed serve leaves no worker behind), and keep
    to its cores, before any thread (TensorFlow's, a decoder's) starts. (Where the OS has no affinity
    call, the workers share every core.)"""
    die_with_parent(parent)
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, cores)


class HostWorkers:
    """The worker processes that stand in for a scaled-out step's instances: one per host, each kept to
    its share of the cores (``core_shares``), so the hosts of a step divide the machine instead of each
    starting a thread or process per core of it. A worker lives for the whole pipeline run: the hosts of
    every scaled-out step with the same instance count run in the same workers, which import
    TensorFlow once, not once per step."""

    def __init__(self) -> None:
        self._pools: dict[tuple[int, int], ProcessPoolExecutor] = {}

    def worker(self, count: int, index: int) -> ProcessPoolExecutor:
        """The worker of host ``index`` (from 0) of a step on ``count`` hosts, started when first asked for."""
        if (count, index) not in self._pools:
            # spawn, not fork: this process may already run TensorFlow's threads.
            self._pools[count, index] = ProcessPoolExecutor(
                1, mp_context=multiprocessing.get_context("spawn"), initializer=_start_host_worker,
                initargs=(core_shares(count)[index], os.getpid()))
        return self._pools[count, index]

    def run(self, component: Component, invocations: Sequence[Invocation]) -> None:
        """Each invocation on its host's worker, all at once; the first failure is raised once all are done."""
        running = [self.worker(len(invocations), i).submit(run_on_host, component, invocation)
                   for i, invocation in enumerate(invocations)]
        futures.wait(running)
        for done in running:
            done.result()

    def close(self) -> None:
        for pool in self._pools.values():
            pool.shutdown()
        self._pools.clear()

    def __enter__(self) -> HostWorkers:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def utc_now() -> datetime:
    return datetime.now(UTC)


def numbered_run_ids() -> RunIds:
    """Run ids numbered 1, 2, … in their suffix instead of random: reproducible, for a system that is the
    only writer of a fresh work folder (the simulation). The claim still refuses an id already taken."""
    numbers = itertools.count(1)
    return lambda pipeline, when: make_run_id(pipeline, when, suffix=next(numbers))


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
        stopwatch: Stopwatch | None = None,
        run_ids: RunIds = make_run_id,
    ) -> None:
        self.workdir = make_workdir(Path(workdir))
        self.settings = settings or Settings()
        self.objects = objects or LocalObjectStore(self.workdir / "store")
        sqlite = SqliteParameterStore(self.workdir / "parameters.sqlite")
        self.params = params or sqlite
        self.names = ParameterNames()
        # The registry is a table of the work folder's SQLite file, beside the parameters.
        self.stores = loop.Stores(objects=self.objects, params=self.params, names=self.names,
                                  registry=SqliteModelRegistry(sqlite))
        self.on_step = on_step
        self.stopwatch = stopwatch  # times every step, as "<pipeline>/<step>" within the run's id
        self.run_ids = run_ids

    # ----------------------------------------------------------------- data
    def import_dataset(self, folder: Path, name: str) -> dict[str, str]:
        """Copy the images of ``folder/{train,val,test}`` into the store as ``data/<name>/<split>``
        (what is not an image is listed, not copied: ``ObjectStore.upload_dir``)."""
        keys = {}
        for split in SPLITS:
            if (folder / split).is_dir():
                keys[split] = data_prefix(name, split)
                if (problem := prefix_problem(keys[split])) is not None:  # refused before a file is copied
                    raise UserError(f"cannot import {folder} as {keys[split]!r}: that is {problem}; rename the folder")
                if not self.objects.list(keys[split]):
                    self.objects.upload_dir(folder / split, keys[split], screen=image_name_reason)
        if not keys:
            raise UserError(f"{folder} has none of {SPLITS}: expected {folder}/train/<class>/<image>")
        return keys

    def import_batch(self, folder: Path, name: str) -> str:
        """Copy the images of ``folder`` into the store as ``batches/<name>``, a prefix that must be empty (a serve run
        names its batch after its own claimed run id, so no other run writes there)."""
        key = batch_prefix(name)
        if self.objects.list(key):
            raise UserError(f"cannot import {folder} as {self.objects.uri(key)}: that batch already holds files "
                            "(from another run); import it under a new name")
        self.objects.upload_dir(folder, key, screen=image_name_reason)
        return key

    # ------------------------------------------------------------- pipelines
    def run_pipeline(self, pipeline: Pipeline, plan: loop.RunPlan, scratch: Path) -> dict[str, Path]:
        """Run every step in order, as the state machine does: inputs from the store, outputs back to it.

        Returns each artifact's local folder (valid while ``scratch`` lives).
        """
        local: dict[str, Path] = {}
        with HostWorkers() as workers:
            for step in pipeline.steps:
                self._run_step(pipeline, step, plan, scratch, local, workers)
        return local

    def _run_step(self, pipeline: Pipeline, step: Step, plan: loop.RunPlan, scratch: Path,
                  local: dict[str, Path], workers: HostWorkers) -> None:
        """One step: inputs from the store, outputs back to it (and into ``local``)."""
        if not runs(step, plan.uri):
            return
        if self.on_step is not None:
            self.on_step(pipeline, step)
        count = step.instance_count(self.settings.instances)
        # Timed as a job is: its inputs in, the run, its outputs out.
        timed = (self.stopwatch.phase(f"{pipeline.name}/{step.name}", within=plan.run_id)
                 if self.stopwatch is not None else contextlib.nullcontext())
        with timed:
            self._run_job(step, plan, scratch, local, workers, count)

    def _run_job(self, step: Step, plan: loop.RunPlan, scratch: Path, local: dict[str, Path], workers: HostWorkers,
                 count: int) -> None:
        """The step as its job: inputs from the store, the component on ``count`` host(s), outputs to the store.

        On one host it runs as in a whole-pipeline job (``driftloop.components.pipeline.run_step``)."""
        sharded = step.sharded if count > 1 else ()
        folders = {artifact: self._materialize(artifact, plan.uri[artifact], scratch, local)
                   for channel, artifact in step.inputs if artifact in plan.uri and channel not in sharded}
        settings = step_settings(step, {step.component.value: self.settings.component(step.component.value).to_dict()},
                                 plan.settings)
        if count == 1:
            written = run_step(step, folders, scratch / "out", settings)
        else:
            invocation = step_invocation(step, folders, scratch / "out", settings, leave_out=sharded)
            self._run_scaled_out(step, plan, invocation, count, scratch, workers)
            written = {artifact: invocation.outputs[channel] for channel, artifact in step.outputs}
        for artifact, folder in written.items():
            self.objects.upload_dir(folder, self.objects.key_from_uri(plan.uri[artifact]))
            local[artifact] = folder

    def _run_scaled_out(self, step: Step, plan: loop.RunPlan, invocation: Invocation, count: int,
                        scratch: Path, workers: HostWorkers) -> None:
        """The step on ``count`` hosts at once, as SageMaker runs it: each host a worker process with its
        part of the sharded inputs (split by key, ``shard_by_key``), the whole of the others and its own
        output folders, which are then put together as SageMaker uploads them to one prefix."""
        hosts = Hosts.of_job(count)
        folders = {host.current: scratch / f"{step.name}@{host.current}" for host in hosts}
        # Each sharded channel's prefix and its keys dealt to the hosts, listed once.
        shares = {}
        for channel, artifact in step.inputs:
            if channel in step.sharded:
                prefix = self.objects.key_from_uri(plan.uri[artifact])
                shares[channel] = (prefix, shard_by_key(self.objects.list(prefix), count))
        invocations = []
        for index, host in enumerate(hosts):
            inputs = dict(invocation.inputs)
            outputs = {channel: folders[host.current] / "out" / channel for channel in invocation.outputs}
            for channel, (prefix, keys_by_host) in shares.items():
                inputs[channel] = folders[host.current] / "in" / channel
                inputs[channel].mkdir(parents=True)
                for key in keys_by_host[index]:
                    self.objects.get_file(key, inputs[channel] / key[len(prefix):].lstrip("/"))
            for folder in outputs.values():
                folder.mkdir(parents=True)
            invocations.append(replace(invocation, inputs=inputs, outputs=outputs, hosts=host))
        workers.run(step.component, invocations)
        for channel, target in invocation.outputs.items():
            for host in hosts:
                part = folders[host.current] / "out" / channel
                for path in sorted(p for p in part.rglob("*") if p.is_file()):
                    destination = target / path.relative_to(part)
                    if destination.exists():
                        raise UserError(f"{step.name}: two hosts wrote {destination.relative_to(target)}")
                    destination.parent.mkdir(parents=True, exist_ok=True)
                    shutil.move(path, destination)

    def _materialize(self, artifact: str, uri: str, scratch: Path, local: dict[str, Path]) -> Path:
        if artifact not in local:
            folder = scratch / "in" / artifact
            if self.objects.download_dir(self.objects.key_from_uri(uri), folder) == 0:
                raise UserError(f"{artifact}: nothing stored under {uri}")
            local[artifact] = folder
        return local[artifact]

    # ----------------------------------------------------------------- train
    def current_model(self) -> TrainRecord | None:
        return read_record(self.params, self.names.train_latest, TrainRecord)

    def train(self, train_key: str, val_key: str, *, when: datetime | None = None,
              run_id: str | None = None) -> TrainRecord:
        """Run the train pipeline on store prefixes; promote the model if it beats the champion.

        The run gets a new id (``run_ids``) unless given one (a retrain's, named when its lease was taken).
        """
        when = when or utc_now()
        run_id = run_id or self.run_ids("train", when)
        loop.claim_run(self.stores, TRAIN_PIPELINE.name, run_id=run_id, time=when.isoformat())
        plan = loop.plan_run(self.stores, TRAIN_PIPELINE.name, run_id=run_id, time=when.isoformat(),
                             start={"train_data": train_key, "val_data": val_key})
        with tempfile.TemporaryDirectory(prefix="driftloop-train-") as tmp:
            self.run_pipeline(TRAIN_PIPELINE, plan, Path(tmp))
        return loop.record_train(self.stores, plan, approval=self.settings.policy.approval)

    # ----------------------------------------------------------------- serve
    def serve(self, batch: Path | str, *, when: datetime | None = None, retrain: bool = True) -> ServeOutcome:
        """Run the serve pipeline on the batch it names: a store prefix, or a local folder imported first
        (as a new batch). With ``retrain``, a decision to retrain runs the train pipeline before returning."""
        when = when or utc_now()
        run_id = self._claim_serve_run(when)
        named = self.import_batch(batch, run_id) if isinstance(batch, Path) else batch
        claim = loop.claim_batch(self.stores, loop.ClaimBatchEvent(run_id=run_id, time=when.isoformat(), batch=named))
        log.info("%s: %s", run_id, claim.summary)
        return self._serve_batch(run_id, named, when, retrain)

    def serve_next(self, *, when: datetime | None = None, retrain: bool = True) -> ServeOutcome | None:
        """A scheduled production run: the oldest complete batch not served yet, or None (no step runs)."""
        when = when or utc_now()
        run_id = self._claim_serve_run(when)
        claim = loop.claim_batch(self.stores, loop.ClaimBatchEvent(run_id=run_id, time=when.isoformat()))
        log.info("%s: %s", run_id, claim.summary)
        return None if claim.batch is None else self._serve_batch(run_id, claim.batch, when, retrain)

    def _claim_serve_run(self, when: datetime) -> str:
        """A new serve run's id, claimed before anything is written under it (its imported batch too)."""
        run_id = self.run_ids("serve", when)
        loop.claim_run(self.stores, SERVE_PIPELINE.name, run_id=run_id, time=when.isoformat())
        return run_id

    def _serve_batch(self, run_id: str, batch_key: str, when: datetime, retrain: bool) -> ServeOutcome:
        try:
            plan = loop.plan_run(self.stores, SERVE_PIPELINE.name, run_id=run_id, time=when.isoformat(),
                                 start={BATCH_START_FIELD: batch_key})
        except loop.NoModel as error:
            raise UserError(f"{error} (driftloop train --data DIR --workdir W)") from error
        with tempfile.TemporaryDirectory(prefix="driftloop-serve-") as tmp:
            self.run_pipeline(SERVE_PIPELINE, plan, Path(tmp))
        report = loop.read_drift_report(self.stores, plan)
        decision = loop.decide(self.stores, plan, report, self.settings.policy)
        outcome, retrained = loop.RetrainOutcome(started=False, reason=decision.reason), None
        if decision.retrain and retrain:
            outcome, retrained = self._retrain(decision, when)
        record = loop.record_serve(self.stores, plan, report, decision, outcome)
        return ServeOutcome(record=record, report=report, decision=decision,
                            retrain=retrained, evaluation=loop.read_evaluation(self.stores, plan.uri["predictions"]))

    def _retrain(self, decision: RetrainDecision, when: datetime) -> tuple[loop.RetrainOutcome, TrainRecord | None]:
        """The retrain a serve run decided on, if it gets the retrain lease (``loop.take_retrain_lease``):
        one retrain at a time, also across processes sharing the work folder. The lease is let go when the
        train run ends, however it ends; one whose process was killed expires after ``RETRAIN_LEASE_TTL``."""
        assert decision.train_data is not None and decision.val_data is not None
        lease = loop.take_retrain_lease(self.stores, decision, run_id=self.run_ids("train", when), now=utc_now(),
                                        ttl=RETRAIN_LEASE_TTL)
        if not lease.taken:
            return lease.outcome, None
        try:
            return lease.outcome, self.train(decision.train_data, decision.val_data, when=when, run_id=lease.run_id)
        finally:
            loop.release_retrain_lease(self.stores, lease.run_id)
