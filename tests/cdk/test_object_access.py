"""Who may read, list and write which objects of the data bucket: each role's S3 grants, as key patterns.

Each test states a role's whole S3 access, so a grant added or widened anywhere fails here until it
is written down. Key patterns are relative to the bucket (``runs/serve/*/record.json``).
"""

from __future__ import annotations

from typing import Any

import pytest
from aws_cdk.assertions import Template

from tools.cfn_template import resolve

from .conftest import Synthesized
from .test_stack import as_list, logical_id, statements_of

Access = dict[str, list[str]]  # S3 action -> sorted key patterns (ListBucket: its s3:prefix condition)


def s3_access(template: Template, stack: Any, role: Any) -> Access:
    bucket = resolve({"Fn::GetAtt": [logical_id(stack.storage.bucket), "Arn"]})
    found: dict[str, set[str]] = {}
    for statement in statements_of(template, role):
        for action in (a for a in as_list(statement["Action"]) if a.startswith("s3:")):
            if action == "s3:ListBucket":
                assert [resolve(r) for r in as_list(statement["Resource"])] == [bucket]
                keys = as_list(statement["Condition"]["StringLike"]["s3:prefix"])
            else:
                keys = [resolve(r).removeprefix(f"{bucket}/") for r in as_list(statement["Resource"])]
            found.setdefault(action, set()).update(keys)
    return {action: sorted(keys) for action, keys in found.items()}


def test_the_claim_lists_batches_and_the_ledger_and_only_creates_ledger_entries(
    synthesized: Synthesized, prod: Template
) -> None:
    stack = synthesized.production
    assert s3_access(prod, stack, stack.functions.claim_batch.role) == {
        "s3:ListBucket": ["batches/*", "ledger/served-again/*", "ledger/served/*"],
        "s3:PutObject": ["ledger/served-again/*", "ledger/served/*"],
    }
    (put,) = [s for s in statements_of(prod, stack.functions.claim_batch.role) if s["Action"] == "s3:PutObject"]
    # A conditional write only (If-None-Match: *): a ledger entry is created, never replaced.
    assert put["Condition"] == {"Null": {"s3:if-none-match": "false"}}


@pytest.mark.parametrize("variant", ["development", "production"])
def test_the_lease_steps_create_only_lease_generations_and_their_release_markers(
    synthesized: Synthesized, variant: str
) -> None:
    """Taking the retrain lease creates its next generation; letting it go, that generation's release marker."""
    stack = getattr(synthesized, variant)
    template = Template.from_stack(stack)
    functions = stack.functions
    assert s3_access(template, stack, functions.take_retrain_lease.role) == {
        "s3:GetObject": ["leases/retrain/*"],
        "s3:ListBucket": ["leases/retrain/*"],
        "s3:PutObject": ["leases/retrain/*.json"],
    }
    assert s3_access(template, stack, functions.release_retrain_lease.role) == {
        "s3:GetObject": ["leases/retrain/*.json"],
        "s3:ListBucket": ["leases/retrain/*"],
        "s3:PutObject": ["leases/retrain/*.released"],
    }
    for function in (functions.take_retrain_lease, functions.release_retrain_lease):
        (put,) = [s for s in statements_of(template, function.role) if s["Action"] == "s3:PutObject"]
        # A conditional write only (If-None-Match: *): a generation or marker is created, never replaced.
        assert put["Condition"] == {"Null": {"s3:if-none-match": "false"}}


def test_simulation_has_no_claim_step(synthesized: Synthesized) -> None:
    assert synthesized.development.functions.claim_batch is None
    assert synthesized.production.functions.next_batch is None


@pytest.mark.parametrize("variant", ["development", "production"])
def test_the_decision_reads_labels_ledger_predictions_records_and_writes_joins_requests_and_retrain_sets(
    synthesized: Synthesized, variant: str
) -> None:
    """The same loop code decides in both modes: a batch named ``batches/<id>`` takes the production path."""
    stack = getattr(synthesized, variant)
    template = Template.from_stack(stack)
    assert s3_access(template, stack, stack.functions.decide.role) == {
        # CopyObject reads its source: the base data sets (data/...) and the labelled images (batches/...).
        "s3:GetObject": ["batches/*", "data/*", "labels/*", "ledger/*", "runs/*/*/record.json",
                         "runs/serve/*/drift_report/*", "runs/serve/*/predictions/*"],
        "s3:ListBucket": ["data/*", "labels/*", "ledger/*", "runs/serve/*/predictions/*"],
        "s3:PutObject": ["data/retrain-*/*", "label-requests/*", "ledger/labelled/*"],
    }


def test_the_record_steps_write_only_their_run_records(synthesized: Synthesized, prod: Template) -> None:
    stack = synthesized.production
    assert s3_access(prod, stack, stack.functions.record_serve.role) == {
        "s3:GetObject": ["runs/serve/*/drift_report/*"],
        "s3:PutObject": ["runs/serve/*/record.json"],
    }
    assert s3_access(prod, stack, stack.functions.record_train.role) == {
        "s3:GetObject": ["data/*/lineage.json", "runs/train/*/champion_eval/*", "runs/train/*/model/*"],
        "s3:ListBucket": ["data/*/lineage.json", "runs/train/*/champion_eval/*", "runs/train/*/model/*"],
        "s3:PutObject": ["runs/train/*/record.json"],
    }


def test_the_plan_reads_no_object(synthesized: Synthesized, prod: Template) -> None:
    stack = synthesized.production
    assert s3_access(prod, stack, stack.functions.plan.role) == {}


def test_sagemaker_jobs_read_data_sets_batches_and_runs_and_write_only_runs(
    synthesized: Synthesized, prod: Template
) -> None:
    stack = synthesized.production
    assert s3_access(prod, stack, stack.job_role.role) == {
        "s3:AbortMultipartUpload": ["runs/*"],
        "s3:GetObject": ["batches/*", "data/*", "runs/*"],
        "s3:ListBucket": ["batches/*", "data/*", "runs/*"],
        "s3:PutObject": ["runs/*"],
    }


def test_the_decision_reads_the_records_its_cool_down_needs(synthesized: Synthesized, prod: Template) -> None:
    """``loop.decide`` reads serve/latest and the last train attempt (train/last-attempt or train/latest)."""
    stack = synthesized.production
    parameters = {logical_id(p): p for p in (stack.parameters.serve_latest, stack.parameters.train_latest,
                                               stack.parameters.train_last_attempt)}
    read = set()
    for statement in statements_of(prod, stack.functions.decide.role):
        if statement["Action"] == "ssm:GetParameter":
            for resource in as_list(statement["Resource"]):
                read |= {part["Ref"] for part in resource["Fn::Join"][1] if isinstance(part, dict) and "Ref" in part
                         and part["Ref"] in parameters}
    assert read == set(parameters)
