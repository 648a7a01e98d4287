"""Pipeline parameter values checked against what a definition declares: one checker for
`python -m pipeline start` (AWS), `run` (local) and the local runner's resolution.

A declared parameter is the definition's `{"Name", "Type", "DefaultValue", "EnumValues"}`.
Every mistake is a ValueError naming the parameter, the value and what was expected.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

PARAMETER_TYPES = ("String", "Integer", "Float", "Boolean")


def split_pair(pair: str, option: str = "--param") -> tuple[str, str]:
    """`NAME=VALUE` -> (NAME, VALUE); the value may itself contain '='."""
    name, sep, value = pair.partition("=")
    if not sep or not name.strip():
        raise ValueError(f"{option} expects NAME=VALUE, got {pair!r}")
    return name.strip(), value


def coerce(name: str, type_: str, value: Any) -> Any:
    """`value` (a default, an override, a CLI string) as the declared type."""
    if type_ not in PARAMETER_TYPES:
        raise ValueError(
            f"parameter {name}: type {type_!r} (supported: {', '.join(PARAMETER_TYPES)})"
        )
    try:
        if type_ == "String":
            return str(value)
        if type_ == "Integer":
            if isinstance(value, bool):
                raise ValueError
            if isinstance(value, float) and not value.is_integer():
                raise ValueError
            return int(value) if not isinstance(value, str) else int(value.strip())
        if type_ == "Float":
            if isinstance(value, bool):
                raise ValueError
            return float(value)
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in {"true", "false"}:
            return value.strip().lower() == "true"
        raise ValueError
    except (TypeError, ValueError):
        raise ValueError(
            f"parameter {name}: {value!r} is not a valid {type_} (parameter {name} is {type_})"
        ) from None


def check_value(parameter: Mapping[str, Any], value: Any) -> Any:
    """`value` coerced to the parameter's type and checked against its EnumValues."""
    name = parameter["Name"]
    coerced = coerce(name, parameter.get("Type", "String"), value)
    allowed = parameter.get("EnumValues")
    if allowed and coerced not in allowed and str(coerced) not in [str(a) for a in allowed]:
        raise ValueError(
            f"parameter {name} must be one of {', '.join(str(a) for a in allowed)}, got {value!r}"
        )
    return coerced


def check_names(names: Iterable[str], declared: Mapping[str, Any]) -> None:
    unknown = sorted(set(names) - set(declared))
    if unknown:
        raise ValueError(
            f"unknown parameter{'s' if len(unknown) > 1 else ''} "
            f"{', '.join(repr(n) for n in unknown)}; the pipeline declares: "
            f"{', '.join(sorted(declared))}"
        )


def parse_overrides(
    pairs: Iterable[str], declared: Mapping[str, Mapping[str, Any]], option: str = "--param"
) -> dict[str, str]:
    """NAME=VALUE pairs checked against the declared parameters (names, types, enums);
    the values stay the strings given (what StartPipelineExecution takes)."""
    overrides: dict[str, str] = {}
    for name, value in (split_pair(pair, option) for pair in pairs):
        check_names([name], declared)
        check_value(declared[name], value)
        overrides[name] = value
    return overrides
