"""Read rendered state machine definitions out of a synthesized template (tokens: ``tools.cfn_template``)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

from tools.cfn_template import resolve


def definition_of(template: dict[str, Any], logical_id: str) -> dict[str, Any]:
    resource = template["Resources"][logical_id]
    return json.loads(resolve(resource["Properties"]["DefinitionString"]))  # type: ignore[no-any-return]


def successors(state: dict[str, Any]) -> list[str]:
    """Every state a state can hand over to: Next, Choice branches and Default, Catch targets."""
    found = [state["Next"]] if "Next" in state else []
    found += [choice["Next"] for choice in state.get("Choices", [])]
    found += [state["Default"]] if "Default" in state else []
    found += [catch["Next"] for catch in state.get("Catch", [])]
    return found


def reachable(
    definition: dict[str, Any], start: str, *, follow_catch: bool = True, stop: frozenset[str] = frozenset()
) -> set[str]:
    """States reachable from ``start``, not going on past any state in ``stop``."""
    states = definition["States"]
    seen: set[str] = set()
    todo = [start]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        if name in stop:
            continue
        state = states[name]
        nexts = successors(state) if follow_catch else [n for n in successors(state)
                                                        if n not in {c["Next"] for c in state.get("Catch", [])}]
        todo.extend(nexts)
    return seen


def happy_path(definition: dict[str, Any]) -> Iterator[str]:
    """States in order along Next/Default (the path taken when every Choice takes its first branch
    whose target is not a Fail state), ignoring Catch: the order the pipeline's jobs run in."""
    states = definition["States"]
    name: str | None = definition["StartAt"]
    seen: set[str] = set()
    while name is not None and name not in seen:
        seen.add(name)
        yield name
        state = states[name]
        if state["Type"] == "Choice":
            options = [c["Next"] for c in state["Choices"]] + [state["Default"]]
            name = next((o for o in options if states[o]["Type"] != "Fail" and o not in seen), None)
        else:
            name = state.get("Next")


def sagemaker_jobs(definition: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        name: state
        for name, state in definition["States"].items()
        if state["Type"] == "Task" and ":sagemaker:" in state["Resource"]
    }


def job_name_prefix(state: dict[str, Any]) -> str:
    """What a job state's every job name starts with (``<prefix>-<uuid>``: a fresh name per attempt)."""
    name = state["Parameters"]["ProcessingJobName.$"]
    prefix = re.fullmatch(r"States\.Format\('([a-z0-9-]+)-\{\}', States\.UUID\(\)\)", name)
    assert prefix is not None, name
    return prefix.group(1)


def job_paths(definition: dict[str, Any], until: str) -> list[list[str]]:
    """The SageMaker jobs started, in order, on every way from the start to ``until`` (Catch not
    followed, no state entered twice: a capacity retry starts the same job again, not another one)."""
    states = definition["States"]
    jobs = sagemaker_jobs(definition)
    found: list[list[str]] = []

    def walk(name: str, path: list[str]) -> None:
        if name in path:
            return
        path = [*path, name]
        if name == until:
            found.append([s for s in path if s in jobs])
            return
        state = states[name]
        catches = {catch["Next"] for catch in state.get("Catch", [])}
        for following in successors(state):
            if following not in catches:
                walk(following, path)

    walk(definition["StartAt"], [])
    return found
