"""Pipeline parameter values checked against what a definition declares: one checker for
`python -m pipeline start` (AWS), `run` (local) and the local runner's resolution.

A declared parameter is the definition's `{"Name", "Type", "DefaultValue", "EnumValues"}`.
Beyond its type and EnumValues, a value must satisfy its RULE (below, by parameter name): what
can be known wrong before any job starts is refused when the execution starts, not hours in.
Every mistake is a ValueError naming the parameter, the value and what was expected.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

PARAMETER_TYPES = ("String", "Integer", "Float", "Boolean")


@dataclass(frozen=True)
class Rule:
    """Bounds (inclusive unless `above` is set: then strictly greater) or a full-match regex."""

    minimum: float | None = None
    maximum: float | None = None
    above: float | None = None
    pattern: str | None = None
    meaning: str = ""

    def problem(self, value: Any) -> str | None:
        """Why `value` (already of the parameter's type) breaks the rule, or None."""
        if self.pattern is not None:
            if not re.fullmatch(self.pattern, str(value)):
                return f"must match {self.pattern} ({self.meaning})"
            return None
        if isinstance(value, float) and not math.isfinite(value):
            return "must be a finite number"
        if self.above is not None and not value > self.above:
            return f"must be greater than {self.above:g}" + self._upto()
        if self.minimum is not None and value < self.minimum:
            return f"must be at least {self.minimum:g}" + self._upto()
        if self.maximum is not None and value > self.maximum:
            return f"must be at most {self.maximum:g}"
        return None

    def _upto(self) -> str:
        return f" and at most {self.maximum:g}" if self.maximum is not None else ""


# What each parameter of pipeline.definition may be beyond its type: the one table `start`,
# `run` and the local runner check (tests/pipeline/test_parameters.py holds it to the
# definition). The containers check the same limits on their arguments (train.py,
# evaluate.py), as a Studio-started execution does not pass through this checker.
RULES: dict[str, Rule] = {
    # SageMaker's own limits: a processing job takes 1..100 instances.
    "ProcessingInstanceCount": Rule(minimum=1, maximum=100),
    "TrainingInstanceCount": Rule(minimum=1, maximum=100),
    "Epochs": Rule(minimum=1, maximum=1000),
    "LearningRate": Rule(above=0, maximum=1),  # AdamW: beyond 1 it only diverges
    "BatchSize": Rule(minimum=1, maximum=1024),
    # Below 32 px a ResNet's 32x downsampling has nothing left; above 512 px a batch no
    # longer fits the training GPUs (train.py IMAGE_SIZE_RANGE).
    "ImageSize": Rule(minimum=32, maximum=512),
    "PerClassCap": Rule(minimum=0),  # 0: no cap
    "MaxSkipFraction": Rule(minimum=0, maximum=1),
    "AccuracyThreshold": Rule(minimum=0, maximum=1),
    "MinTrainImages": Rule(minimum=1),
    "MinValidationImages": Rule(minimum=1),
    "MinTestImages": Rule(minimum=1),
    # SageMaker's EndpointName: 1..63 letters, digits and inner hyphens.
    "EndpointName": Rule(
        pattern=r"[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}",
        meaning="1 to 63 letters, digits and hyphens, starting and ending with a letter or digit",
    ),
}


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
    """`value` coerced to the parameter's type, checked against its EnumValues and RULE."""
    name = parameter["Name"]
    coerced = coerce(name, parameter.get("Type", "String"), value)
    allowed = parameter.get("EnumValues")
    if allowed and coerced not in allowed and str(coerced) not in [str(a) for a in allowed]:
        raise ValueError(
            f"parameter {name} must be one of {', '.join(str(a) for a in allowed)}, got {value!r}"
        )
    rule = RULES.get(name)
    problem = rule.problem(coerced) if rule else None
    if problem:
        raise ValueError(f"parameter {name} {problem}, got {value!r}")
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
