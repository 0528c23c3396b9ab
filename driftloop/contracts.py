"""Typed payloads for every process edge: one frozen dataclass each, with one way to and from JSON.

A payload that crosses a process boundary (a Lambda event or result, a file one component writes
and the control steps read, a parameter's value) is parsed strictly: a missing or unknown field is
a ``ContractError`` that names the payload and the field, before any logic runs. Only the standard
library is used, so the Lambda bundle stays free of numpy and TensorFlow.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from collections.abc import Mapping
from typing import Any, ClassVar, Self, get_args, get_origin


class ContractError(ValueError):
    """A payload that does not match its contract (the message names the payload and the field)."""


class Contract:
    """Mixin for frozen dataclasses: strict ``from_dict``/``from_json`` and ``to_dict``/``to_json``."""

    # Keys a reader tolerates and drops (e.g. fields an older writer still sends). Empty: strict.
    ignored_keys: ClassVar[frozenset[str]] = frozenset()

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)  # type: ignore[call-overload, no-any-return]

    def to_json(self, *, indent: int | None = None) -> str:
        return json.dumps(self.to_dict(), sort_keys=True, indent=indent)

    @classmethod
    def from_dict(cls, data: Any) -> Self:
        return _build(cls, data, cls.__name__)  # type: ignore[no-any-return]

    @classmethod
    def from_json(cls, text: str | bytes) -> Self:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as error:
            raise ContractError(f"{cls.__name__}: not JSON: {error}") from error
        return cls.from_dict(data)


def field_names(kind: type[Contract]) -> tuple[str, ...]:
    """The contract's field names, in order (state machines build payloads from these)."""
    return tuple(f.name for f in dataclasses.fields(kind))  # type: ignore[arg-type]


def _build(kind: type, data: Any, where: str) -> Any:
    if not isinstance(data, Mapping):
        raise ContractError(f"{where}: expected an object, got {type(data).__name__}")
    hints = typing.get_type_hints(kind)
    fields = {f.name: f for f in dataclasses.fields(kind)}
    ignored: frozenset[str] = getattr(kind, "ignored_keys", frozenset())
    unknown = sorted(set(data) - set(fields) - ignored)
    if unknown:
        raise ContractError(f"{where}: unknown field(s) {unknown}; expected {sorted(fields)}")
    values: dict[str, Any] = {}
    for name, spec in fields.items():
        if name not in data:
            if spec.default is dataclasses.MISSING and spec.default_factory is dataclasses.MISSING:
                raise ContractError(f"{where}: missing field {name!r}")
            continue
        values[name] = _value(hints[name], data[name], f"{where}.{name}")
    return kind(**values)


def _value(hint: Any, value: Any, where: str) -> Any:
    origin = get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        options = get_args(hint)
        if value is None:
            if type(None) in options:
                return None
            raise ContractError(f"{where}: must not be null")
        errors = []
        for option in (o for o in options if o is not type(None)):
            try:
                return _value(option, value, where)
            except ContractError as error:
                errors.append(str(error))
        raise ContractError(errors[0] if len(errors) == 1 else f"{where}: matches none of {options}: {errors}")
    if origin is typing.Literal:
        if value not in get_args(hint):
            raise ContractError(f"{where}: must be one of {get_args(hint)}, got {value!r}")
        return value
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        return _build(hint, value, where)
    if origin in (list, tuple):
        if not isinstance(value, list | tuple):
            raise ContractError(f"{where}: expected a list, got {type(value).__name__}")
        (item,) = get_args(hint)[:1] or (Any,)
        items = [_value(item, v, f"{where}[{i}]") for i, v in enumerate(value)]
        return items if origin is list else tuple(items)
    if origin is dict:
        if not isinstance(value, Mapping):
            raise ContractError(f"{where}: expected an object, got {type(value).__name__}")
        _, item = get_args(hint) or (str, Any)
        return {str(k): _value(item, v, f"{where}.{k}") for k, v in value.items()}
    return _scalar(hint, value, where)


def _scalar(hint: Any, value: Any, where: str) -> Any:
    if hint is Any:
        return value
    if hint is bool:
        if not isinstance(value, bool):
            raise ContractError(f"{where}: expected true or false, got {value!r}")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ContractError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ContractError(f"{where}: expected an integer, got {value!r}")
        return value
    if hint is str:
        if not isinstance(value, str):
            raise ContractError(f"{where}: expected a string, got {value!r}")
        return value
    raise TypeError(f"{where}: the contract uses a type the parser does not know: {hint!r}")
