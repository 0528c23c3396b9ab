"""The deployment's settings: one frozen dataclass, read from ``cdk.json`` context.

The defaults are this dataclass's (and, for the components and the decision, those of
``driftloop.config``): ``cdk.json``'s ``driftloop`` key holds only what a deployment changes. Any
setting can also be given on the command line with a dotted key, e.g.
``npx cdk deploy -c driftloop.environment=production`` or
``-c driftloop.training.instance_type=ml.m5.2xlarge`` (values are parsed as JSON when they can be,
so ``-c driftloop.schedule_enabled=false`` is a boolean). Unknown keys are errors, so a
typo never falls back to a default silently.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Mapping
from typing import Any, Final, Literal, Self, cast

from driftloop.config import DecisionPolicy, Settings
from driftloop.layout import ParameterNames
from driftloop.pipelines import Component
from driftloop.plan_checks import InvalidInput, check_plannable, deployment_starts

CONTEXT_KEY: Final = "driftloop"
Environment = Literal["development", "production"]
# CloudWatch Logs accepts only these retention periods (days).
LOG_RETENTION_DAYS: Final = (1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 3653)


# SageMaker's ModelPackageGroupName: a letter or digit, then up to 62 more of letters, digits and hyphens,
# never ending with a hyphen.
MODEL_PACKAGE_GROUP_MAX: Final = 63
MODEL_PACKAGE_GROUP: Final = re.compile(r"[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}")


class ConfigError(ValueError):
    """A setting in cdk.json or on the command line that cannot be deployed."""


@dataclasses.dataclass(frozen=True)
class JobResources:
    """What one kind of SageMaker job runs on."""

    instance_type: str
    volume_size_gb: int = 30
    max_runtime_minutes: int = 60

    def validate(self, what: str) -> None:
        if not self.instance_type.startswith("ml."):
            raise ConfigError(f"{what}.instance_type must be a SageMaker type like ml.m5.large: {self.instance_type!r}")
        if not 1 <= self.volume_size_gb <= 16384:
            raise ConfigError(f"{what}.volume_size_gb must be 1..16384, got {self.volume_size_gb}")
        if not 1 <= self.max_runtime_minutes <= 5 * 24 * 60:
            raise ConfigError(f"{what}.max_runtime_minutes must be 1..7200 (5 days), got {self.max_runtime_minutes}")


@dataclasses.dataclass(frozen=True)
class DeploymentConfig:
    """Everything that differs between deployments; defaults are the development set-up."""

    stack_name: str = "Driftloop"
    # development: `cdk destroy` deletes everything, bucket contents included.
    # production: the buckets (data, artifacts, access logs) and the log groups are retained.
    environment: Environment = "development"
    # Parameter Store names start with this; empty: "/<stack_name in lower case>" ("/driftloop"), so
    # that two stacks in one account and region never share a parameter.
    parameter_prefix: str = ""
    # The SageMaker model package group every trained model is registered in; empty: the stack's name
    # (so two stacks stay apart). 1 to 63 letters, digits and hyphens (SageMaker's rule).
    model_package_group: str = ""
    # EventBridge Scheduler expression for the serve pipeline, and whether it fires.
    schedule_expression: str = "rate(1 hour)"
    schedule_enabled: bool = True
    # Simulation: each scheduled run serves the next stage's test set (data/<stage>/test).
    # Otherwise (production) each run serves the oldest complete batch under batches/ not served yet.
    simulation: bool = True
    # Processing jobs (processing, drift, explainability; the champion's evaluation).
    processing: JobResources = JobResources("ml.m5.large", 30, 60)
    # The training job (algorithm, train mode); it runs on one instance.
    training: JobResources = JobResources("ml.m5.xlarge", 30, 120)
    # Serve-mode inference (algorithm, serve mode).
    inference: JobResources = JobResources("ml.m5.large", 30, 60)
    # How many instances each serve step that scales out runs on (driftloop.config.ScaleOut), e.g.
    # {"process": 4, "drift_features": 2, "predict": 2}: its sharded input is split by S3 key.
    instances: dict[str, int] = dataclasses.field(default_factory=dict)
    # Non-default component settings by component name (see driftloop.config), e.g.
    # {"drift": {"p_val": 0.01}, "algorithm": {"epochs": 20}}.
    settings: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)
    # When a drift report starts a retrain (driftloop.config.DecisionPolicy).
    decision: dict[str, Any] = dataclasses.field(default_factory=lambda: DecisionPolicy().to_dict())
    notification_email: str = ""
    log_retention_days: int = 30
    access_log_retention_days: int = 90
    # A job that failed for lack of instance capacity is started again (new name) this many times.
    capacity_retries: int = 3
    capacity_retry_wait_seconds: int = 300
    tracing: bool = True

    @property
    def destroy_on_teardown(self) -> bool:
        return self.environment == "development"

    @property
    def parameter_names(self) -> ParameterNames:
        return ParameterNames(self.parameter_prefix or f"/{self.stack_name.lower()}")

    @property
    def package_group(self) -> str:
        """The model package group's name (``model_package_group``, else the stack's name), checked."""
        name = self.model_package_group or self.stack_name
        if len(name) > MODEL_PACKAGE_GROUP_MAX or not MODEL_PACKAGE_GROUP.fullmatch(name):
            where = "model_package_group" if self.model_package_group else \
                "the stack name (the model package group's name unless model_package_group is set)"
            raise ConfigError(f"{where} {name!r} is not a SageMaker model package group name: 1 to "
                              f"{MODEL_PACKAGE_GROUP_MAX} letters, digits and hyphens, starting with a letter or "
                              "digit; set model_package_group to one")
        return name

    @property
    def runtime_settings(self) -> Settings:
        """The components' settings and the decision policy, as the local runner takes them."""
        return Settings.from_overrides(self.settings, self.decision, self.instances)

    @property
    def decision_policy(self) -> DecisionPolicy:
        return self.runtime_settings.policy

    def component_settings(self, component: Component) -> dict[str, Any]:
        """The non-default settings of one component (what its jobs' arguments carry)."""
        return self.runtime_settings.overrides(component.value)

    @classmethod
    def from_context(cls, base: Mapping[str, Any] | None, overrides: Mapping[str, Any] | None = None) -> Self:
        """Build from the ``driftloop`` context object and dotted ``driftloop.<key>`` overrides."""
        values: dict[str, Any] = json.loads(json.dumps(dict(base or {})))
        for dotted, raw in (overrides or {}).items():
            path = dotted.split(".")[1:]
            target = values
            for part in path[:-1]:
                target = target.setdefault(part, {})
            target[path[-1]] = _parse(raw)
        return cls.from_mapping(values)

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> Self:
        fields = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - set(fields))
        if unknown:
            raise ConfigError(f"unknown setting(s) {unknown} in context '{CONTEXT_KEY}'; known: {sorted(fields)}")
        kwargs: dict[str, Any] = {}
        for name, value in values.items():
            default = getattr(cls(), name)
            if isinstance(default, JobResources):
                kwargs[name] = _job_resources(name, default, value)
            elif isinstance(default, bool) and not isinstance(value, bool):
                raise ConfigError(f"{name} must be true or false, got {value!r}")
            elif isinstance(default, int) and not isinstance(default, bool) and (
                    not isinstance(value, int) or isinstance(value, bool)):
                raise ConfigError(f"{name} must be an integer, got {value!r}")
            else:
                kwargs[name] = value
        config = cls(**kwargs)
        config.validate()
        return config

    def validate(self) -> None:
        if self.environment not in ("development", "production"):
            raise ConfigError(f"environment must be 'development' or 'production', got {self.environment!r}")
        try:
            self.parameter_names  # noqa: B018 - validates the prefix
            self.package_group  # noqa: B018 - validates the model package group's name
            self.runtime_settings  # noqa: B018 - validates the component settings, the policy and the instances
        except ValueError as error:
            raise ConfigError(str(error)) from error
        if not self.schedule_expression.startswith(("rate(", "cron(", "at(")):
            raise ConfigError(
                f"schedule_expression must be rate(...), cron(...) or at(...): {self.schedule_expression!r}"
            )
        for name in ("processing", "training", "inference"):
            cast(JobResources, getattr(self, name)).validate(name)
        for pipeline, start in deployment_starts(simulation=self.simulation):
            try:
                check_plannable(pipeline, start)
            except InvalidInput as error:
                raise ConfigError(f"a {pipeline} run the deployment starts would be refused: {error}") from error
        for name in ("log_retention_days", "access_log_retention_days"):
            if getattr(self, name) not in LOG_RETENTION_DAYS:
                raise ConfigError(f"{name} must be one of {LOG_RETENTION_DAYS}")
        if self.notification_email and "@" not in self.notification_email:
            raise ConfigError(f"notification_email is not an e-mail address: {self.notification_email!r}")
        if not 0 <= self.capacity_retries <= 10:
            raise ConfigError("capacity_retries must be 0..10")


def _job_resources(name: str, default: JobResources, value: Any) -> JobResources:
    """``default`` with the given fields replaced, so one field can be overridden on its own."""
    if not isinstance(value, Mapping):
        raise ConfigError(f"{name} must be an object with instance_type, volume_size_gb, ...; got {value!r}")
    known = {f.name: type(getattr(default, f.name)) for f in dataclasses.fields(JobResources)}
    unknown = sorted(set(value) - set(known))
    if unknown:
        raise ConfigError(f"unknown setting(s) {unknown} in {name}; known: {sorted(known)}")
    for key, item in value.items():
        if not isinstance(item, known[key]) or isinstance(item, bool):
            raise ConfigError(f"{name}.{key} must be of type {known[key].__name__}, got {item!r}")
    return dataclasses.replace(default, **value)


def _parse(raw: Any) -> Any:
    """Command-line context values arrive as strings: JSON when they parse, else the string."""
    if not isinstance(raw, str):
        return raw
    try:
        return json.loads(raw)
    except json.JSONDecodeError:
        return raw
