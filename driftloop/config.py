"""Typed settings for every component, in one place.

Each dataclass is frozen and has defaults that make the local simulation work on a 2-core
machine. Components read them from JSON (SageMaker hyperparameters or a ``--config`` file) with
``from_mapping``, which rejects unknown keys so that a typo is an error, not a silent default.
Every field is checked against its declared type and the ``Range`` in its metadata when a dataclass
is made, so a wrong value stops a run (or ``cdk synth``) before it starts, naming the key.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, ClassVar, Final, Literal, Self, TypeVar, get_args, get_origin, get_type_hints

# A component's modes: learn from training data, serve a batch, or merge what the hosts of a
# scaled-out serve step wrote into one result (``driftloop.pipelines``).
Mode = Literal["train", "serve", "merge"]
FeatureKind = Literal["uae", "embeddings", "softmax", "uncertainty", "predictions"]
Correction = Literal["bonferroni", "fdr"]
# Which condition of a serve batch starts a retrain (driftloop.decision): drift, harm (the estimated
# accuracy drop), both, or either.
Rule = Literal["drift", "harm", "drift_and_harm", "drift_or_harm"]
# Which condition starts a retrain on labelled production data (driftloop.production).
ProductionRule = Literal["measured_harm", "drift_or_measured_harm"]
# The condition that held for a batch (under drift_or_harm: drift, harm, or both), or (production
# mode) harm measured on labels.
Fired = Literal["drift", "harm", "drift_and_harm", "measured_harm"]
# How a challenger that beats the champion is promoted (driftloop.loop.record_train): at once, or once a
# person approves its model package.
ApprovalMode = Literal["automatic", "manual"]

T = TypeVar("T")


@dataclasses.dataclass(frozen=True)
class Range:
    """The values a number setting may take, declared once beside its field (``at_least``, ``between``)."""

    low: float
    high: float | None = None
    # Whether the bounds themselves are excluded, e.g. a p-value in (0, 1).
    open_ends: bool = False

    def __contains__(self, value: float) -> bool:
        above = value > self.low if self.open_ends else value >= self.low
        if self.high is None:
            return above
        return above and (value < self.high if self.open_ends else value <= self.high)

    def __str__(self) -> str:
        if self.high is None:
            return f"more than {self.low}" if self.open_ends else f"at least {self.low}"
        return f"in ({self.low}, {self.high})" if self.open_ends else f"in [{self.low}, {self.high}]"


def at_least(low: float) -> Any:
    """A field whose value is ``low`` or more (its default given as ``default=``)."""
    return {"range": Range(low)}


def between(low: float, high: float, *, open_ends: bool = False) -> Any:
    return {"range": Range(low, high, open_ends)}


class SettingError(ValueError):
    """A setting of the wrong type or out of range: names the key, the value and what it may be."""

    def __init__(self, key: str, value: Any, expected: str) -> None:
        self.key, self.value, self.expected = key, value, expected
        super().__init__(f"{key} must be {expected}, got {value!r}")

    def under(self, prefix: str) -> SettingError:
        """The same error with the key's full dotted path, e.g. ``settings.algorithm.epochs``."""
        return SettingError(f"{prefix}.{self.key}" if prefix else self.key, self.value, self.expected)


# An empty mapping: the default of every ``from_mapping`` (never mutated).
NO_VALUES: Final[Mapping[str, Any]] = MappingProxyType({})


class FromMapping:
    """Build a frozen dataclass from a JSON-like mapping, coercing SageMaker's string values.

    Every field is checked against its declared type (``bool`` is not an ``int``) and against the
    ``Range`` in its metadata when the dataclass is made, however it is made.
    """

    # Settings that moved elsewhere, by their old name: where to give them now (the error says so).
    MOVED: ClassVar[Mapping[str, str]] = {}

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any] = NO_VALUES, where: str = "") -> Self:
        """From ``values`` (``where``: their dotted path in the settings, named by errors)."""
        if not isinstance(values, Mapping):
            raise SettingError(where or cls.__name__, values, "an object of settings")
        types = _field_types(cls)
        unknown = sorted(set(values) - set(types))
        for name in set(unknown) & set(cls.MOVED):
            raise ValueError(f"{cls.__name__}: {name} is not a setting here any more; set {cls.MOVED[name]} instead")
        if unknown:
            raise ValueError(f"{where or cls.__name__}: unknown setting(s) {unknown}; known: {sorted(types)}")
        try:
            return cls(**{name: _coerce(raw, types[name]) for name, raw in values.items()})
        except SettingError as error:
            raise error.under(where) from None

    def __post_init__(self) -> None:
        for field in dataclasses.fields(self):  # type: ignore[arg-type]
            _check(field.name, getattr(self, field.name), _field_types(type(self))[field.name],
                   field.metadata.get("range"))

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)  # type: ignore[call-overload, no-any-return]


# Each settings class's field types, resolved once (``_field_types``).
_FIELD_TYPES: dict[type, dict[str, Any]] = {}


def _field_types(cls: type) -> dict[str, Any]:
    """Each field's declared type, resolved from its annotation: the one source of the types."""
    if cls not in _FIELD_TYPES:
        hints = get_type_hints(cls)
        _FIELD_TYPES[cls] = {field.name: hints[field.name] for field in dataclasses.fields(cls)}
    return _FIELD_TYPES[cls]


def _expected(kind: Any, allowed: Range | None) -> str:
    if get_origin(kind) is Literal:
        return f"one of {get_args(kind)}"
    words = {bool: "true or false", int: "an integer", float: "a finite number", str: "a string"}[kind]
    return f"{words}, {allowed}" if allowed is not None else words


def _fits(value: Any, kind: Any) -> bool:
    if get_origin(kind) is Literal:
        return isinstance(value, str) and value in get_args(kind)
    if kind is bool or isinstance(value, bool):
        return kind is bool and isinstance(value, bool)
    if kind is float:
        return isinstance(value, int | float) and math.isfinite(value)
    return isinstance(value, kind)


def _check(name: str, value: Any, kind: Any, allowed: Range | None) -> None:
    """Refuse ``value`` unless it is of ``kind`` and in ``allowed``; the error names all three."""
    if not _fits(value, kind):
        raise SettingError(name, value, _expected(kind, allowed))
    if allowed is not None and value not in allowed:
        raise SettingError(name, value, str(allowed))


_TRUE, _FALSE = {"1", "true", "yes", "on"}, {"0", "false", "no", "off"}


def _coerce(raw: Any, kind: Any) -> Any:
    """SageMaker passes every hyperparameter as a string; turn it back into the field's type.

    A string that does not parse is left as it is, so the check names it.
    """
    if not isinstance(raw, str) or kind not in (bool, int, float):
        return float(raw) if kind is float and type(raw) is int else raw
    text = raw.strip().lower()
    if kind is bool:
        return True if text in _TRUE else False if text in _FALSE else raw
    try:
        return kind(text)
    except ValueError:
        return raw


@dataclasses.dataclass(frozen=True)
class ProcessingConfig(FromMapping):
    # 48 px: the synthetic classes' accuracy of 64 px for far less training CPU (docs/benchmarks.md,
    # "What changed because of these numbers", first session).
    image_size: int = dataclasses.field(default=48, metadata=at_least(1))
    shard_size: int = dataclasses.field(default=256, metadata=at_least(1))
    # Decompression-bomb guard: images with more pixels than this are skipped, not decoded.
    max_pixels: int = dataclasses.field(default=40_000_000, metadata=at_least(1))


@dataclasses.dataclass(frozen=True)
class TrainingConfig(FromMapping):
    architecture: str = "small_cnn"  # or "mobilenet_v2" (needs weights_path for pretrained weights)
    weights_path: str = ""
    epochs: int = dataclasses.field(default=40, metadata=at_least(1))
    batch_size: int = dataclasses.field(default=32, metadata=at_least(1))
    # docs/benchmarks.md section 8 (3e-3 against 1e-3 and 3e-4)
    learning_rate: float = dataclasses.field(default=3e-3, metadata=between(0, 1, open_ends=True))
    patience: int = dataclasses.field(default=6, metadata=at_least(1))
    seed: int = dataclasses.field(default=42, metadata=at_least(0))
    # Which data set the model is trained on (a label the runner passes; copied into metrics.json).
    trained_on: str = ""
    # tf.config.experimental.enable_op_determinism(): same seed + data -> same weights (process-wide).
    deterministic: bool = True
    # Start a retrain from the champion's weights (the model serving when drift was found) instead
    # of random ones; the first training, or a champion of other classes, input size or
    # architecture, starts from random weights (metrics.json's initial_weights says which).
    # Why: docs/benchmarks.md section 8 (as accurate on the new stage, forgets less, fewer epochs).
    warm_start: bool = True


@dataclasses.dataclass(frozen=True)
class DriftConfig(FromMapping):
    # "predictions" tests both the entropy of the classifier's predictions and its class
    # probabilities: the entropy alone misses a model that is confidently wrong (docs/benchmarks.md
    # section 3, and "What changed because of these numbers").
    features: FeatureKind = "predictions"
    correction: Correction = "bonferroni"
    p_val: float = dataclasses.field(default=0.05, metadata=between(0, 1, open_ends=True))
    encoding_dim: int = dataclasses.field(default=32, metadata=at_least(1))
    # The smallest serve batch the KS test judges: a smaller one is reported as too small, and the
    # decision never retrains on it (driftloop.decision).
    min_batch_size: int = dataclasses.field(default=20, metadata=at_least(1))
    # Effect-size floor (serve time): a batch drifts only if a feature's KS test is significant *and*
    # its KS distance is at least this. Why 0.1: docs/benchmarks.md section 7.4 (it changes no
    # decision at the seed's batch size and stops a harmless shift being flagged at large n).
    min_distance: float = dataclasses.field(default=0.1, metadata=between(0, 1))
    max_reference: int = dataclasses.field(default=2000, metadata=at_least(1))
    seed: int = dataclasses.field(default=0, metadata=at_least(0))
    # Identity recorded with the detector (train mode): the data's name or URI, and the run.
    trained_on: str = ""
    run_id: str = ""


@dataclasses.dataclass(frozen=True)
class ExplainConfig(FromMapping):
    n_explain: int = dataclasses.field(default=8, metadata=at_least(1))
    n_background: int = dataclasses.field(default=32, metadata=at_least(1))
    seed: int = dataclasses.field(default=0, metadata=at_least(0))
    # Expected-gradients samples per explained image (one gradient each; cost grows linearly).
    nsamples: int = dataclasses.field(default=64, metadata=at_least(1))
    # Images per class explained at train time for the per-class mean |SHAP| maps.
    per_class: int = dataclasses.field(default=4, metadata=at_least(1))


@dataclasses.dataclass(frozen=True)
class DecisionPolicy(FromMapping):
    """When a drift report should start a retrain (see ``driftloop.decision``), and how a retrained model
    that beat the champion is promoted."""

    # One smallest batch, judged by the drift component and obeyed here (its report says too_small).
    MOVED: ClassVar[Mapping[str, str]] = {"min_batch_size": "settings.drift.min_batch_size"}

    # Serve runs to wait after a retrain before another one may start (0: none).
    cooldown_runs: int = dataclasses.field(default=0, metadata=at_least(0))
    # "drift": the seed's rule, retrain on drift. "harm": retrain when the batch's estimated accuracy
    # (driftloop.ml.accuracy_estimate, without labels) lies at least ``harm_threshold_points`` below the
    # model's validation accuracy. "drift_and_harm": both must hold; "drift_or_harm": either. Why
    # "drift_or_harm" is the default: docs/benchmarks.md section 6 (with X = 10 it misses about 40 % fewer of
    # the batches that lost 10 points or more than drift alone, and retrains on Original under the
    # Original model no more often: a drop the drift test did not flag is often seen by the estimate,
    # and a confidently wrong model the estimate misjudges usually drifts).
    rule: Rule = "drift_or_harm"
    # X, in percentage points; 10: the loss the decided criterion calls harmful, and the smallest X
    # measured at which the estimate alone never fired on Original under the Original model (section 6).
    harm_threshold_points: float = dataclasses.field(default=10.0, metadata=between(0, 100))
    # Production mode (batches under batches/<id>/, labels under labels/<id>/; driftloop.production).
    # "measured_harm": retrain when a batch the current model served scores at least
    # ``measured_harm_points`` below its validation accuracy on its labels; "drift_or_measured_harm":
    # drift on the served batch is enough too. Why the first is the default: a drift alarm on a
    # batch that lost nothing (docs/drift.md, false alarms) would retrain on unchanged data, and
    # labels say whether it lost anything; drift still asks for labels (label_request_size).
    production_rule: ProductionRule = "measured_harm"
    # 10: two standard errors of a 30-label accuracy near 90 % (so label noise alone rarely fires it),
    # and the loss the default simulation's criterion names harmful.
    measured_harm_points: float = dataclasses.field(default=10.0, metadata=between(0, 100))
    # A batch counts as evidence of harm once this many of its images are labelled.
    min_labelled_to_judge: int = dataclasses.field(default=30, metadata=at_least(0))
    # Labelled images the current model did not train on that a production retrain waits for.
    min_new_labels: int = dataclasses.field(default=60, metadata=at_least(0))
    # The labelled batches a retrain adds to the base data: the newest N (0: all of them).
    label_window_batches: int = dataclasses.field(default=0, metadata=at_least(0))
    # Share of labelled images held out for validation, by a hash of the image id (the same in every retrain).
    val_share: float = dataclasses.field(default=0.3, metadata=between(0, 1, open_ends=True))
    # Images a drifting batch without labels asks a person to label (a Ground Truth input manifest).
    label_request_size: int = dataclasses.field(default=50, metadata=at_least(0))
    # "automatic": a challenger that wins is promoted at once (its package Approved). "manual": its package
    # waits as PendingManualApproval, serving stays on the champion until a person approves it.
    approval: ApprovalMode = "automatic"


# SageMaker's default quota of processing instances of one type is far below this.
MAX_INSTANCES = 100


@dataclasses.dataclass(frozen=True)
class ScaleOut(FromMapping):
    """How many instances each serve step that can scale out runs on (SageMaker hosts on AWS,
    worker processes locally); one field per such step of the serve pipeline, by step name.

    The step's sharded input is split by object key across the instances, each instance writes its
    own part of the output, and whatever reads the output reads every part.
    """

    process: int = dataclasses.field(default=1, metadata=between(1, MAX_INSTANCES))
    drift_features: int = dataclasses.field(default=1, metadata=between(1, MAX_INSTANCES))
    predict: int = dataclasses.field(default=1, metadata=between(1, MAX_INSTANCES))


# Which field of ``Settings`` each component reads (``--settings`` / hyperparameters), by component name.
COMPONENT_FIELDS: Final[Mapping[str, str]] = {
    "processing": "processing",
    "algorithm": "training",
    "drift": "drift",
    "explainability": "explain",
}


@dataclasses.dataclass(frozen=True)
class Settings:
    """Every component's settings and the decision policy: what one deployment or local system runs with.

    Locally they are given in code or on the command line; on AWS they come from the ``settings``
    and ``decision`` keys in ``cdk.json``, which hold only what differs from these defaults.
    """

    processing: ProcessingConfig = dataclasses.field(default_factory=ProcessingConfig)
    training: TrainingConfig = dataclasses.field(default_factory=TrainingConfig)
    drift: DriftConfig = dataclasses.field(default_factory=DriftConfig)
    explain: ExplainConfig = dataclasses.field(default_factory=ExplainConfig)
    policy: DecisionPolicy = dataclasses.field(default_factory=DecisionPolicy)
    instances: ScaleOut = dataclasses.field(default_factory=ScaleOut)

    def component(self, name: str) -> FromMapping:
        """The settings of the component called ``name`` (``COMPONENT_FIELDS``)."""
        settings: FromMapping = getattr(self, COMPONENT_FIELDS[name])
        return settings

    def overrides(self, name: str) -> dict[str, Any]:
        """One component's settings that differ from the defaults (what a job's arguments carry)."""
        default = Settings().component(name).to_dict()
        return {k: v for k, v in self.component(name).to_dict().items() if default[k] != v}

    @classmethod
    def from_overrides(
        cls, settings: Mapping[str, Mapping[str, Any]], policy: Mapping[str, Any],
        instances: Mapping[str, Any] = NO_VALUES,
    ) -> Settings:
        """From non-default values by component name (``cdk.json``'s ``settings``), unknown names refused;
        ``policy`` and ``instances`` as ``cdk.json``'s ``decision`` and ``instances``.

        Every value is checked here, so a wrong type or a value out of range stops a run (or a synth)
        before it starts; the error names the key by its dotted path, e.g. ``settings.algorithm.epochs``.
        """
        if not isinstance(settings, Mapping):
            raise SettingError("settings", settings, "an object of settings by component name")
        unknown = sorted(set(settings) - set(COMPONENT_FIELDS))
        if unknown:
            raise ValueError(f"settings for unknown component(s) {unknown}; known: {sorted(COMPONENT_FIELDS)}")
        defaults = cls()
        built: dict[str, Any] = {
            field: type(defaults.component(name)).from_mapping(settings.get(name, NO_VALUES), f"settings.{name}")
            for name, field in COMPONENT_FIELDS.items()
        }
        return cls(policy=DecisionPolicy.from_mapping(policy, "decision"),
                   instances=ScaleOut.from_mapping(instances, "instances"), **built)
