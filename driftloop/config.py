"""Typed settings for every component, in one place.

Each dataclass is frozen and has defaults that make the local simulation work on a 2-core
machine. Components read them from JSON (SageMaker hyperparameters or a ``--config`` file) with
``from_mapping``, which rejects unknown keys so that a typo is an error, not a silent default.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, Self, TypeVar, get_args

# A component's modes: learn from training data, serve a batch, or merge what the hosts of a
# scaled-out serve step wrote into one result (``driftloop.pipelines``).
Mode = Literal["train", "serve", "merge"]
FeatureKind = Literal["uae", "embeddings", "softmax", "uncertainty", "predictions"]
Correction = Literal["bonferroni", "fdr"]
# Which condition of a serve batch starts a retrain (driftloop.decision): drift, harm (the estimated
# accuracy drop), or both.
Rule = Literal["drift", "harm", "drift_and_harm"]

T = TypeVar("T")


class _FromMapping:
    """Build a frozen dataclass from a JSON-like mapping, coercing SageMaker's string values."""

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any] | None = None) -> Self:
        values = dict(values or {})
        fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
        unknown = sorted(set(values) - set(fields))
        if unknown:
            raise ValueError(f"{cls.__name__}: unknown setting(s) {unknown}; known: {sorted(fields)}")
        kwargs: dict[str, Any] = {}
        for name, raw in values.items():
            default = getattr(cls(), name)
            kwargs[name] = _coerce(raw, type(default))
        return cls(**kwargs)

    @classmethod
    def from_json_file(cls, path: str | Path | None) -> Self:
        if path is None or not Path(path).exists():
            return cls()
        return cls.from_mapping(json.loads(Path(path).read_text()))

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)  # type: ignore[call-overload, no-any-return]


def _coerce(raw: Any, kind: type) -> Any:
    """SageMaker passes every hyperparameter as a string; turn it back into the default's type."""
    if kind is bool and isinstance(raw, str):
        return raw.strip().lower() in {"1", "true", "yes", "on"}
    if kind in (int, float) and isinstance(raw, str):
        return kind(raw)
    return raw


@dataclasses.dataclass(frozen=True)
class ProcessingConfig(_FromMapping):
    # Measured: 48 px trains ~2.4x faster than 64 px on 2 cores, and the synthetic classes stay at 100 %.
    image_size: int = 48
    shard_size: int = 256
    # Decompression-bomb guard: images with more pixels than this are skipped, not decoded.
    max_pixels: int = 40_000_000


@dataclasses.dataclass(frozen=True)
class TrainingConfig(_FromMapping):
    architecture: str = "small_cnn"  # or "mobilenet_v2" (needs weights_path for pretrained weights)
    weights_path: str = ""
    epochs: int = 40
    batch_size: int = 32
    learning_rate: float = 3e-3  # measured: 1e-3 had not converged in 40 epochs on the blog-size set
    patience: int = 6
    seed: int = 42
    # Which data set the model is trained on (a label the runner passes; copied into metrics.json).
    trained_on: str = ""
    # tf.config.experimental.enable_op_determinism(): same seed + data -> same weights (process-wide).
    deterministic: bool = True
    # Start a retrain from the champion's weights (the model serving when drift was found) instead
    # of random ones; the first training, or a champion of other classes, input size or
    # architecture, starts from random weights (metrics.json's initial_weights says which).
    # Measured over the default simulation's 12 retrains (2 seeds, docs/benchmarks.md section 7):
    # validation accuracy 0.973 vs 0.951, all-stage test accuracy 0.808 vs 0.747 (it forgets less),
    # 10 % fewer epochs; lower learning rates for the fine-tuning did no better.
    warm_start: bool = True


@dataclasses.dataclass(frozen=True)
class DriftConfig(_FromMapping):
    # Measured (docs/benchmarks.md, drift quality): at the seed's batch of 42 images the entropy of
    # the classifier's predictions flags the most batches on which accuracy fell, but not a model
    # that is confidently wrong; its class probabilities catch that. "predictions" tests both.
    features: FeatureKind = "predictions"
    correction: Correction = "bonferroni"
    p_val: float = 0.05
    encoding_dim: int = 32
    min_batch_size: int = 20
    # Effect-size floor (serve time): a batch drifts only if a feature's KS test is significant *and*
    # its KS distance is at least this. Measured (docs/benchmarks.md, drift at large n): at 42 images
    # a significant shift is at least ~0.23 apart, so 0.1 changes no decision there; with a 2,000-image
    # reference it stops ±5 % brightness (no accuracy cost, KS distance 0.06) being flagged at any n
    # and still flags Stage-1's flips (-8.5 points, 0.115).
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
class ExplainConfig(_FromMapping):
    n_explain: int = 8
    n_background: int = 32
    seed: int = 0
    # Expected-gradients samples per explained image (one gradient each; cost grows linearly).
    nsamples: int = 64
    # Images per class explained at train time for the per-class mean |SHAP| maps.
    per_class: int = 4


@dataclasses.dataclass(frozen=True)
class DecisionPolicy(_FromMapping):
    """When a drift report should start a retrain (see ``driftloop.decision``)."""

    min_batch_size: int = 20
    # Serve runs to wait after a retrain before another one may start (0: none).
    cooldown_runs: int = 0
    # "drift": the seed's rule, retrain on drift. "harm": retrain when the batch's estimated accuracy
    # (driftloop.ml.accuracy_estimate, without labels) lies at least ``harm_threshold_points`` below the
    # model's validation accuracy. "drift_and_harm": both must hold. Measured (docs/benchmarks.md,
    # section 6; 42-image batches): only "drift" acts on >= 95 % of the batches that lost >= 10 points
    # (harm(atc_ne, X) misses 30-45 % at every X: a confidently wrong model estimates its drop too
    # small); "drift_and_harm" at X = 5 cuts the needless retrains from 22 % to 8 % but misses 32 %.
    rule: Rule = "drift"
    # X, in percentage points; 5: the benchmark's smallest, so the harm rules' fewest misses.
    harm_threshold_points: float = 5.0

    def __post_init__(self) -> None:
        if self.rule not in get_args(Rule):
            raise ValueError(f"rule must be one of {get_args(Rule)}, got {self.rule!r}")
        if not 0.0 <= self.harm_threshold_points <= 100.0:
            raise ValueError(f"harm_threshold_points must be in [0, 100], got {self.harm_threshold_points}")


# SageMaker's default quota of processing instances of one type is far below this.
MAX_INSTANCES = 100


@dataclasses.dataclass(frozen=True)
class ScaleOut(_FromMapping):
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


# Which typed settings each component reads (``--settings`` / hyperparameters), by component name.
COMPONENT_SETTINGS: dict[str, type[_FromMapping]] = {
    "processing": ProcessingConfig,
    "algorithm": TrainingConfig,
    "drift": DriftConfig,
    "explainability": ExplainConfig,
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

    def component(self, name: str) -> _FromMapping:
        by_name: dict[str, _FromMapping] = {
            "processing": self.processing, "algorithm": self.training, "drift": self.drift,
            "explainability": self.explain,
        }
        return by_name[name]

    def overrides(self, name: str) -> dict[str, Any]:
        """One component's settings that differ from the defaults (what a job's arguments carry)."""
        default = COMPONENT_SETTINGS[name]().to_dict()
        return {k: v for k, v in self.component(name).to_dict().items() if default[k] != v}

    @classmethod
    def from_overrides(
        cls, settings: Mapping[str, Mapping[str, Any]], policy: Mapping[str, Any],
        instances: Mapping[str, Any] | None = None,
    ) -> Settings:
        """From non-default values by component name (``cdk.json``'s ``settings``), unknown names refused;
        ``policy`` and ``instances`` as ``cdk.json``'s ``decision`` and ``instances``."""
        unknown = sorted(set(settings) - set(COMPONENT_SETTINGS))
        if unknown:
            raise ValueError(f"settings for unknown component(s) {unknown}; known: {sorted(COMPONENT_SETTINGS)}")
        built = {name: COMPONENT_SETTINGS[name].from_mapping(settings.get(name)) for name in COMPONENT_SETTINGS}
        return cls(
            processing=built["processing"], training=built["algorithm"], drift=built["drift"],  # type: ignore[arg-type]
            explain=built["explainability"], policy=DecisionPolicy.from_mapping(policy),  # type: ignore[arg-type]
            instances=ScaleOut.from_mapping(instances),
        )
