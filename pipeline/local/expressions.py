"""Evaluate the expressions of a SageMaker pipeline definition (schema 2020-12-01).

Covers `Get` (Parameters.*, Execution.*, Steps.<name>.<property path>), `Std:Join`,
`Std:JsonGet` (on a step's PropertyFile or an S3 URI) and the condition types. Anything else
raises `UnsupportedFeature` naming what was found and where.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pipeline import parameters


class UnsupportedFeature(ValueError):
    """The definition uses a construct the local runner does not implement."""


class ResolutionError(ValueError):
    """An expression names something that does not exist (yet) in this execution."""


PARAMETER_TYPES = {"String", "Integer", "Float", "Boolean"}
EXECUTION_VARIABLES = {
    "PipelineExecutionId",
    "PipelineExecutionArn",
    "PipelineName",
    "PipelineArn",
    "StartDateTime",
    "CurrentDateTime",
}

_SEGMENT = re.compile(
    r"""\.?([A-Za-z_][A-Za-z0-9_]*)|\[\s*'([^']*)'\s*\]|\[\s*"([^"]*)"\s*\]|\[\s*(\d+)\s*\]"""
)


def parse_path(path: str) -> list[str | int]:
    """`A.B['x'][0].C` -> ['A', 'B', 'x', 0, 'C']; a clear error for anything else."""
    parts: list[str | int] = []
    pos = 0
    path = path.strip()
    if path.startswith("$."):
        path = path[2:]
    while pos < len(path):
        m = _SEGMENT.match(path, pos)
        if not m or m.end() == pos:
            raise ResolutionError(f"cannot parse property path {path!r} at {path[pos:]!r}")
        name, single, double, index = m.groups()
        if index is not None:
            parts.append(int(index))
        else:
            parts.append(name if name is not None else single if single is not None else double)
        pos = m.end()
    return parts


def walk(value: Any, parts: list[str | int], where: str) -> Any:
    """Follow `parts` into nested dicts/lists. A string key on a list picks the element whose
    `...Name` field equals it (how `Outputs['train']` names a processing output)."""
    for i, part in enumerate(parts):
        shown = where + "".join(
            f"[{p!r}]" if not isinstance(p, str) else f".{p}" for p in parts[: i + 1]
        )
        if (isinstance(value, Mapping) and isinstance(part, str) and part in value) or (
            isinstance(value, list) and isinstance(part, int) and -len(value) <= part < len(value)
        ):
            value = value[part]
        elif isinstance(value, list) and isinstance(part, str):
            named = [
                v
                for v in value
                if isinstance(v, Mapping) and any(k.endswith("Name") and v[k] == part for k in v)
            ]
            if not named:
                raise ResolutionError(f"{shown}: no element named {part!r}")
            value = named[0]
        else:
            raise ResolutionError(f"{shown}: no such property")
    return value


def coerce_parameter(name: str, type_: str, value: Any) -> Any:
    """A parameter value (default or override, possibly a CLI string) as its declared type."""
    if type_ not in PARAMETER_TYPES:
        raise UnsupportedFeature(
            f"parameter {name}: type {type_!r} (supported: {sorted(PARAMETER_TYPES)})"
        )
    return parameters.coerce(name, type_, value)


def resolve_parameters(
    declared: list[Mapping[str, Any]], overrides: Mapping[str, Any]
) -> dict[str, Any]:
    """Defaults from the definition, replaced by `overrides`, each coerced to its type and
    checked against its EnumValues (pipeline.parameters, as `start` checks them for AWS)."""
    by_name: dict[str, Mapping[str, Any]] = {}
    values: dict[str, Any] = {}
    for p in declared:
        name, type_ = p["Name"], p.get("Type", "String")
        if type_ not in PARAMETER_TYPES:
            raise UnsupportedFeature(f"parameter {name}: type {type_!r}")
        by_name[name] = p
        if "DefaultValue" in p:
            values[name] = coerce_parameter(name, type_, p["DefaultValue"])
    parameters.check_names(overrides, by_name)
    for name, value in overrides.items():
        values[name] = parameters.check_value(by_name[name], value)
    missing = sorted(set(by_name) - set(values))
    if missing:
        raise ValueError(f"parameter(s) without default need a value: {', '.join(missing)}")
    return values


@dataclass
class Scope:
    """What expressions can see during one execution."""

    parameters: dict[str, Any]
    execution: dict[str, Any]
    # Step name -> its properties (Describe*-shaped dict, or Lambda OutputParameters, ...).
    steps: dict[str, dict[str, Any]] = field(default_factory=dict)
    # Step name -> property file name -> s3 URI of the file.
    property_files: dict[str, dict[str, str]] = field(default_factory=dict)
    # Reads a JSON document at an s3 URI (the local object store).
    read_json_uri: Callable[[str], Any] | None = None


def referenced_steps(expr: Any) -> set[str]:
    """Names of the steps an expression (or any nested structure) reads properties of."""
    found: set[str] = set()
    if isinstance(expr, Mapping):
        get = expr.get("Get")
        if len(expr) == 1 and isinstance(get, str) and get.startswith("Steps."):
            found.add(parse_path(get)[1])  # type: ignore[arg-type]
        for v in expr.values():
            found |= referenced_steps(v)
    elif isinstance(expr, list):
        for v in expr:
            found |= referenced_steps(v)
    return found


def evaluate(expr: Any, scope: Scope, where: str = "") -> Any:
    """Resolve every expression inside `expr` (a nested structure of the definition)."""
    if isinstance(expr, list):
        return [evaluate(v, scope, f"{where}[{i}]") for i, v in enumerate(expr)]
    if not isinstance(expr, Mapping):
        return expr
    if len(expr) == 1:
        ((key, arg),) = expr.items()
        if key == "Get":
            return _get(arg, scope, where)
        if key == "Std:Join":
            return _join(arg, scope, where)
        if key == "Std:JsonGet":
            return _json_get(arg, scope, where)
        if key.startswith("Std:"):
            raise UnsupportedFeature(f"{where or 'expression'}: function {key!r} is not supported")
    return {k: evaluate(v, scope, f"{where}.{k}" if where else k) for k, v in expr.items()}


def _get(path: Any, scope: Scope, where: str) -> Any:
    if not isinstance(path, str):
        raise ResolutionError(f"{where}: Get needs a string path, got {path!r}")
    parts = parse_path(path)
    root = parts[0]
    if root == "Parameters":
        if len(parts) != 2 or parts[1] not in scope.parameters:
            raise ResolutionError(f"{where}: no parameter {path!r}")
        return scope.parameters[parts[1]]
    if root == "Execution":
        if len(parts) != 2 or parts[1] not in EXECUTION_VARIABLES:
            raise UnsupportedFeature(
                f"{where}: execution variable {path!r} (supported: {sorted(EXECUTION_VARIABLES)})"
            )
        return scope.execution[parts[1]]
    if root == "Steps":
        if len(parts) < 3:
            raise ResolutionError(f"{where}: {path!r} names no property")
        step = parts[1]
        if step not in scope.steps:
            raise ResolutionError(f"{where}: {path!r} reads step {step!r}, which has not run")
        if parts[2] == "PropertyFiles":
            raise ResolutionError(f"{where}: {path!r}: property files are read with Std:JsonGet")
        return walk(scope.steps[step], parts[2:], f"Steps.{step}")  # type: ignore[arg-type]
    raise UnsupportedFeature(
        f"{where}: Get of {path!r} (supported roots: Parameters, Execution, Steps)"
    )


def to_text(value: Any) -> str:
    """How the service prints a primitive inside Std:Join."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (dict, list)):
        return json.dumps(value)
    return str(value)


def _join(arg: Any, scope: Scope, where: str) -> str:
    if not isinstance(arg, Mapping) or "Values" not in arg:
        raise ResolutionError(f"{where}: Std:Join needs On and Values, got {arg!r}")
    values = evaluate(arg["Values"], scope, f"{where}.Std:Join")
    return str(arg.get("On", "")).join(to_text(v) for v in values)


def _json_get(arg: Any, scope: Scope, where: str) -> Any:
    if not isinstance(arg, Mapping) or "Path" not in arg:
        raise ResolutionError(f"{where}: Std:JsonGet needs Path and PropertyFile or S3Uri")
    if "PropertyFile" in arg:
        ref = arg["PropertyFile"]
        get = ref.get("Get") if isinstance(ref, Mapping) else None
        parts = parse_path(get) if isinstance(get, str) else []
        if len(parts) != 4 or parts[0] != "Steps" or parts[2] != "PropertyFiles":
            raise ResolutionError(
                f"{where}: PropertyFile must be Steps.<step>.PropertyFiles.<name>"
            )
        step, name = parts[1], parts[3]
        files = scope.property_files.get(step)  # type: ignore[arg-type]
        if files is None:
            raise ResolutionError(f"{where}: property file of step {step!r}, which has not run")
        if name not in files:
            raise ResolutionError(f"{where}: step {step!r} declares no property file {name!r}")
        uri = files[name]
    elif "S3Uri" in arg:
        uri = evaluate(arg["S3Uri"], scope, where)
    else:
        raise ResolutionError(f"{where}: Std:JsonGet needs PropertyFile or S3Uri")
    if scope.read_json_uri is None:
        raise ResolutionError(f"{where}: no object store to read {uri}")
    document = scope.read_json_uri(uri)
    return walk(document, parse_path(str(arg["Path"])), uri)


_COMPARISONS: dict[str, Callable[[Any, Any], bool]] = {
    "Equals": lambda a, b: a == b,
    "GreaterThan": lambda a, b: a > b,
    "GreaterThanOrEqualTo": lambda a, b: a >= b,
    "LessThan": lambda a, b: a < b,
    "LessThanOrEqualTo": lambda a, b: a <= b,
}


def _comparable(left: Any, right: Any) -> tuple[Any, Any]:
    """Numbers compare as numbers (a JSON value read as "0.7" against a Float parameter)."""
    numeric = (int, float)
    if isinstance(left, numeric) != isinstance(right, numeric):
        try:
            return float(left), float(right)
        except (TypeError, ValueError):
            pass
    return left, right


def evaluate_condition(cond: Mapping[str, Any], scope: Scope, where: str = "condition") -> bool:
    """True or False for one condition of a Condition step."""
    type_ = cond.get("Type")
    if type_ in _COMPARISONS:
        left = evaluate(cond["LeftValue"], scope, f"{where}.LeftValue")
        right = evaluate(cond["RightValue"], scope, f"{where}.RightValue")
        a, b = _comparable(left, right)
        try:
            return bool(_COMPARISONS[type_](a, b))
        except TypeError:
            raise ResolutionError(f"{where}: cannot compare {left!r} {type_} {right!r}") from None
    if type_ == "In":
        value = evaluate(cond["QueryValue"], scope, f"{where}.QueryValue")
        options = evaluate(cond["Values"], scope, f"{where}.Values")
        return any(a == b for a, b in (_comparable(value, o) for o in options))
    if type_ == "Not":
        return not evaluate_condition(cond["Condition"], scope, f"{where}.Not")
    if type_ == "Or":
        return any(
            evaluate_condition(c, scope, f"{where}.Or[{i}]")
            for i, c in enumerate(cond["Conditions"])
        )
    raise UnsupportedFeature(f"{where}: condition type {type_!r} is not supported")


def describe_condition(cond: Mapping[str, Any], scope: Scope) -> str:
    """`0.42 GreaterThanOrEqualTo 0.9`: a condition with its resolved operands, for messages."""
    type_ = cond.get("Type")
    if type_ in _COMPARISONS:
        left = evaluate(cond["LeftValue"], scope)
        right = evaluate(cond["RightValue"], scope)
        return f"{left!r} {type_} {right!r}"
    if type_ == "Not":
        return f"Not({describe_condition(cond['Condition'], scope)})"
    if type_ == "Or":
        return "Or(" + ", ".join(describe_condition(c, scope) for c in cond["Conditions"]) + ")"
    if type_ == "In":
        return f"{evaluate(cond['QueryValue'], scope)!r} In {evaluate(cond['Values'], scope)!r}"
    return str(type_)


SUPPORTED_FUNCTIONS = {"Get", "Std:Join", "Std:JsonGet"}


def check_expressions(node: Any, where: str) -> None:
    """Raise UnsupportedFeature for any function or Get root the evaluator does not know,
    before anything runs."""
    if isinstance(node, list):
        for i, v in enumerate(node):
            check_expressions(v, f"{where}[{i}]")
        return
    if not isinstance(node, Mapping):
        return
    if len(node) == 1:
        ((key, arg),) = node.items()
        if key.startswith("Std:") and key not in SUPPORTED_FUNCTIONS:
            raise UnsupportedFeature(
                f"{where}: function {key!r} is not supported by the local runner "
                f"(supported: {', '.join(sorted(SUPPORTED_FUNCTIONS))})"
            )
        if key == "Get":
            if not isinstance(arg, str):
                raise UnsupportedFeature(f"{where}: Get of a non-string {arg!r}")
            root = parse_path(arg)[0]
            if root not in {"Parameters", "Execution", "Steps"}:
                raise UnsupportedFeature(
                    f"{where}: Get of {arg!r} (supported roots: Parameters, Execution, Steps)"
                )
            if root == "Execution" and parse_path(arg)[1:] not in (
                [v] for v in EXECUTION_VARIABLES
            ):
                raise UnsupportedFeature(
                    f"{where}: execution variable {arg!r} "
                    f"(supported: {', '.join(sorted(EXECUTION_VARIABLES))})"
                )
            return
    for k, v in node.items():
        check_expressions(v, f"{where}.{k}")
