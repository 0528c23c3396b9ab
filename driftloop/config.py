"""Typed settings for every component, in one place.

Each dataclass is frozen and has defaults that make the local simulation work on a 2-core
machine. Components read them from JSON (SageMaker hyperparameters or a ``--config`` file) with
``from_mapping``, which rejects unknown keys so that a typo is an error, not a silent default.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, ClassVar, Final, Literal, Self, TypeVar, get_args

# A component's modes: learn from training data, serve a batch, or merge what the hosts of a
# scaled-out serve step wrote into one result (``driftloop.pipelines``).
Mode = Literal["train", "serve", "merge"]
FeatureKind = Literal["uae", "embeddings", "softmax", "uncertainty", "predictions"]
Correction = Literal["bonferroni", "fdr"]
# Which condition of a serve batch starts a retrain (driftloop.decision): drift, harm (the estimated
# accuracy drop), or both.
Rule = Literal["drift", "harm", "drift_and_harm"]
# Which condition starts a retrain on labelled production data (driftloop.production).
ProductionRule = Literal["measured_harm", "drift_or_measured_harm"]
# The condition that held for a batch: one of the rules, or (production mode) harm measured on labels.
Fired = Literal["drift", "harm", "drift_and_harm", "measured_harm"]

T = TypeVar("T")


class FromMapping:
    """Build a frozen dataclass from a JSON-like mapping, coercing SageMaker's string values."""

    # Settings that moved elsewhere, by their old name: where to give them now (the error says so).
    MOVED: ClassVar[Mapping[str, str]] = {}

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any] | None = None) -> Self:
        values = dict(values or {})
        fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
        unknown = sorted(set(values) - set(fields))
        for name in set(unknown) & set(cls.MOVED):
            raise ValueError(f"{cls.__name__}: {name} is not a setting here any more; set {cls.MOVED[name]} instead")
        if unknown:
            raise ValueError(f"{cls.__name__}: unknown setting(s) {unknown}; known: {sorted(fields)}")
        kwargs: dict[str, Any] = {}
        for name, raw in values.items():
            default = getattr(cls(), name)
            kwargs[name] = _coerce(raw, type(default))
        return cls(**kwargs)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)  # type: ignore[call-overload, no-any-return]

    def _at_least_one(self, *names: str) -> None:
        """Counts and sizes that a job cannot run with at 0: refused when the settings are made."""
        for name in names:
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")


def _coerce(raw: Any, kind: type) -> Any:
    """SageMaker passes every hyperparameter as a string; turn it back into the default's type."""
    if kind is bool and isinstance(raw, str):
        return raw.strip().lower() in {"1", "true", "yes", "on"}
    if kind in (int, float) and isinstance(raw, str):
        return kind(raw)
    return raw


@dataclasses.dataclass(frozen=True)
class ProcessingConfig(FromMapping):
    # 48 px: the synthetic classes' accuracy of 64 px for far less training CPU (docs/benchmarks.md,
    # "What changed because of these numbers", first session).
    image_size: int = 48
    shard_size: int = 256
    # Decompression-bomb guard: images with more pixels than this are skipped, not decoded.
    max_pixels: int = 40_000_000

    def __post_init__(self) -> None:
        self._at_least_one("image_size", "shard_size", "max_pixels")


@dataclasses.dataclass(frozen=True)
class TrainingConfig(FromMapping):
    architecture: str = "small_cnn"  # or "mobilenet_v2" (needs weights_path for pretrained weights)
    weights_path: str = ""
    epochs: int = 40
    batch_size: int = 32
    learning_rate: float = 3e-3  # docs/benchmarks.md section 8 (3e-3 against 1e-3 and 3e-4)
    patience: int = 6
    seed: int = 42
    # Which data set the model is trained on (a label the runner passes; copied into metrics.json).
    trained_on: str = ""
    # tf.config.experimental.enable_op_determinism(): same seed + data -> same weights (process-wide).
    deterministic: bool = True
    # Start a retrain from the champion's weights (the model serving when drift was found) instead
    # of random ones; the first training, or a champion of other classes, input size or
    # architecture, starts from random weights (metrics.json's initial_weights says which).
    # Why: docs/benchmarks.md section 8 (as accurate on the new stage, forgets less, fewer epochs).
    warm_start: bool = True

    def __post_init__(self) -> None:
        self._at_least_one("epochs", "batch_size", "patience")


@dataclasses.dataclass(frozen=True)
class DriftConfig(FromMapping):
    # "predictions" tests both the entropy of the classifier's predictions and its class
    # probabilities: the entropy alone misses a model that is confidently wrong (docs/benchmarks.md
    # section 3, and "What changed because of these numbers").
    features: FeatureKind = "predictions"
    correction: Correction = "bonferroni"
    p_val: float = 0.05
    encoding_dim: int = 32
    # The smallest serve batch the KS test judges: a smaller one is reported as too small, and the
    # decision never retrains on it (driftloop.decision).
    min_batch_size: int = 20
    # Effect-size floor (serve time): a batch drifts only if a feature's KS test is significant *and*
    # its KS distance is at least this. Why 0.1: docs/benchmarks.md section 7.4 (it changes no
    # decision at the seed's batch size and stops a harmless shift being flagged at large n).
    min_distance: float = 0.1
    max_reference: int = 2000
    seed: int = 0
    # Identity recorded with the detector (train mode): the data's name or URI, and the run.
    trained_on: str = ""
    run_id: str = ""

    def __post_init__(self) -> None:
        if self.features not in get_args(FeatureKind):
            raise ValueError(f"features must be one of {get_args(FeatureKind)}, got {self.features!r}")
        if self.correction not in get_args(Correction):
            raise ValueError(f"correction must be one of {get_args(Correction)}, got {self.correction!r}")
        if not 0.0 < self.p_val < 1.0:
            raise ValueError(f"p_val must be in (0, 1), got {self.p_val}")
        if not 0.0 <= self.min_distance <= 1.0:
            raise ValueError(f"min_distance (a KS distance) must be in [0, 1], got {self.min_distance}")


@dataclasses.dataclass(frozen=True)
class ExplainConfig(FromMapping):
    n_explain: int = 8
    n_background: int = 32
    seed: int = 0
    # Expected-gradients samples per explained image (one gradient each; cost grows linearly).
    nsamples: int = 64
    # Images per class explained at train time for the per-class mean |SHAP| maps.
    per_class: int = 4

    def __post_init__(self) -> None:
        self._at_least_one("n_explain", "n_background", "nsamples")


@dataclasses.dataclass(frozen=True)
class DecisionPolicy(FromMapping):
    """When a drift report should start a retrain (see ``driftloop.decision``)."""

    # One smallest batch, judged by the drift component and obeyed here (its report says too_small).
    MOVED: ClassVar[Mapping[str, str]] = {"min_batch_size": "settings.drift.min_batch_size"}

    # Serve runs to wait after a retrain before another one may start (0: none).
    cooldown_runs: int = 0
    # "drift": the seed's rule, retrain on drift. "harm": retrain when the batch's estimated accuracy
    # (driftloop.ml.accuracy_estimate, without labels) lies at least ``harm_threshold_points`` below the
    # model's validation accuracy. "drift_and_harm": both must hold. Why "drift" is the default:
    # docs/benchmarks.md section 6 (the harm rules miss batches that lost many points, because a
    # confidently wrong model estimates its drop too small).
    rule: Rule = "drift"
    # X, in percentage points; 5: the benchmark's smallest (section 6), so the harm rules' fewest misses.
    harm_threshold_points: float = 5.0
    # Production mode (batches under batches/<id>/, labels under labels/<id>/; driftloop.production).
    # "measured_harm": retrain when a batch the current model served scores at least
    # ``measured_harm_points`` below its validation accuracy on its labels; "drift_or_measured_harm":
    # drift on the served batch is enough too. Why the first is the default: a drift alarm on a
    # batch that lost nothing (docs/drift.md, false alarms) would retrain on unchanged data, and
    # labels say whether it lost anything; drift still asks for labels (label_request_size).
    production_rule: ProductionRule = "measured_harm"
    # 10: two standard errors of a 30-label accuracy near 90 % (so label noise alone rarely fires it),
    # and the loss the default simulation's criterion names harmful.
    measured_harm_points: float = 10.0
    # A batch counts as evidence of harm once this many of its images are labelled.
    min_labelled_to_judge: int = 30
    # Labelled images the current model did not train on that a production retrain waits for.
    min_new_labels: int = 60
    # The labelled batches a retrain adds to the base data: the newest N (0: all of them).
    label_window_batches: int = 0
    # Share of labelled images held out for validation, by a hash of the image id (the same in every retrain).
    val_share: float = 0.3
    # Images a drifting batch without labels asks a person to label (a Ground Truth input manifest).
    label_request_size: int = 50

    def __post_init__(self) -> None:
        if self.rule not in get_args(Rule):
            raise ValueError(f"rule must be one of {get_args(Rule)}, got {self.rule!r}")
        if self.production_rule not in get_args(ProductionRule):
            raise ValueError(f"production_rule must be one of {get_args(ProductionRule)}, got {self.production_rule!r}")
        for name in ("harm_threshold_points", "measured_harm_points"):
            if not 0.0 <= getattr(self, name) <= 100.0:
                raise ValueError(f"{name} must be in [0, 100], got {getattr(self, name)}")
        for name in ("min_labelled_to_judge", "min_new_labels", "label_window_batches", "label_request_size"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be 0 or more, got {getattr(self, name)}")
        if not 0.0 < self.val_share < 1.0:
            raise ValueError(f"val_share must be between 0 and 1, got {self.val_share}")


# SageMaker's default quota of processing instances of one type is far below this.
MAX_INSTANCES = 100


@dataclasses.dataclass(frozen=True)
class ScaleOut(FromMapping):
    """How many instances each serve step that can scale out runs on (SageMaker hosts on AWS,
    worker processes locally); one field per such step of the serve pipeline, by step name.

    The step's sharded input is split by object key across the instances, each instance writes its
    own part of the output, and whatever reads the output reads every part.
    """

    process: int = 1
    drift_features: int = 1
    predict: int = 1

    def __post_init__(self) -> None:
        for name, count in self.to_dict().items():
            if not isinstance(count, int) or isinstance(count, bool) or not 1 <= count <= MAX_INSTANCES:
                raise ValueError(f"instances.{name} must be an integer 1..{MAX_INSTANCES}, got {count!r}")


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
        instances: Mapping[str, Any] | None = None,
    ) -> Settings:
        """From non-default values by component name (``cdk.json``'s ``settings``), unknown names refused;
        ``policy`` and ``instances`` as ``cdk.json``'s ``decision`` and ``instances``."""
        unknown = sorted(set(settings) - set(COMPONENT_FIELDS))
        if unknown:
            raise ValueError(f"settings for unknown component(s) {unknown}; known: {sorted(COMPONENT_FIELDS)}")
        defaults = cls(policy=DecisionPolicy.from_mapping(policy), instances=ScaleOut.from_mapping(instances))
        built: dict[str, Any] = {
            field: type(defaults.component(name)).from_mapping(settings.get(name))
            for name, field in COMPONENT_FIELDS.items()
        }
        return dataclasses.replace(defaults, **built)
