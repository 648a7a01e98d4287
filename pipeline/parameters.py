"""Pipeline parameter values checked against what a definition declares: one checker for
`python -m pipeline start` (AWS), `run` (local) and the local runner's resolution.

A declared parameter is the definition's `{"Name", "Type", "DefaultValue", "EnumValues"}`.
Beyond its type and EnumValues, a value must satisfy its RULE (below, by parameter name): what
can be known wrong before any job starts is refused when the execution starts, not hours in.
Every mistake is a ValueError naming the parameter, the value and what was expected.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

PARAMETER_TYPES = ("String", "Integer", "Float", "Boolean")


@dataclass(frozen=True)
class Rule:
    """Bounds, inclusive unless `above` is set: then strictly greater."""

    minimum: float | None = None
    maximum: float | None = None
    above: float | None = None

    def problem(self, value: Any) -> str | None:
        """Why `value` (already of the parameter's type) breaks the rule, or None."""
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
}


# What each parameter means: Studio shows only a parameter's name, type and default (the
# definition has no field for a description), so this table is their documentation, printed
# by `python -m pipeline.parameters` and copied into README.md "Parameters" (a test keeps the
# two equal).
DOCS: dict[str, str] = {
    "ProcessingInstanceType": "Instance type of the Prepare and Evaluate jobs.",
    "ProcessingInstanceCount": "Prepare's instances; each takes a share of the images "
    "(Evaluate always runs on one).",
    "TrainingInstanceType": "Instance type of the Train job (GPU types train with one rank "
    "per GPU).",
    "TrainingInstanceCount": "Train's instances (torchrun across all of them).",
    "Epochs": "Most epochs to train; early stopping may end sooner.",
    "LearningRate": "AdamW's peak learning rate.",
    "BatchSize": "Images per batch on each GPU (or CPU).",
    "ImageSize": "Side in pixels that images are resized to, in Prepare and Train.",
    "Architecture": "The network to train (`smallcnn`: a tiny CNN for smoke runs).",
    "PretrainedWeights": "`imagenet`: start from ImageNet weights staged with the pipeline; "
    "`none`: random initialisation.",
    "SourceUri": "Where the bin images are: an `s3://` prefix holding `bin-images/` and "
    "`metadata/` (default: the public Amazon Bin Image Dataset).",
    "FileListUri": "Which images to use: `bundled` (the curated list shipped with the code), "
    "`scan` (every image under SourceUri's `metadata/`) or the `s3://` URI of a list in the "
    "same format.",
    "PerClassCap": "Most images per item count (1-5) taken from the list; `0`: no cap.",
    "MaxSkipFraction": "Share of the selected images that may be unusable (corrupt, missing "
    "metadata) before Prepare fails.",
    "AccuracyThreshold": "Test accuracy the model needs to be registered and deployed.",
    "MinTrainImages": "Fewest train images Train accepts (it fails below).",
    "MinValidationImages": "Fewest validation images Train accepts (it fails below).",
    "MinTestImages": "Fewest test images Evaluate accepts (it fails below).",
    "ModelApprovalStatus": "Status of the registered version: `Approved` deploys it at once, "
    "`PendingManualApproval` waits for a person (the only value where the pipeline may not "
    "approve, e.g. prod).",
}


def allowed(parameter: Mapping[str, Any]) -> str:
    """The values a declared parameter takes, in words."""
    if parameter.get("EnumValues"):
        return ", ".join(f"`{v}`" for v in parameter["EnumValues"])
    rule = RULES.get(parameter["Name"])
    if rule is None:
        return f"any {parameter.get('Type', 'String')}"
    low = f"> {rule.above:g}" if rule.above is not None else None
    if low is None and rule.minimum is not None:
        low = f">= {rule.minimum:g}"
    high = f"<= {rule.maximum:g}" if rule.maximum is not None else None
    return ", ".join(part for part in (low, high) if part)


def describe(declared: Iterable[Mapping[str, Any]]) -> str:
    """The declared parameters as a Markdown table: name, type, default, allowed, meaning."""
    rows = [
        "| Parameter | Type | Default | Allowed | Meaning |",
        "| --- | --- | --- | --- | --- |",
    ]
    for parameter in declared:
        name = parameter["Name"]
        if name not in DOCS:
            raise ValueError(f"parameter {name} has no entry in pipeline.parameters.DOCS")
        rows.append(
            f"| `{name}` | {parameter.get('Type', 'String')} | `{parameter['DefaultValue']}` "
            f"| {allowed(parameter)} | {DOCS[name]} |"
        )
    return "\n".join(rows) + "\n"


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


def main(argv: list[str] | None = None) -> int:
    """`python -m pipeline.parameters DEFINITION_JSON` (`-`: stdin): the definition's parameter
    table in Markdown, e.g. `python -m pipeline definition | python -m pipeline.parameters -`.
    It reads a file rather than building one: this module sits below the definition."""
    import json
    import sys
    from pathlib import Path

    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        sys.stderr.write("usage: python -m pipeline.parameters DEFINITION_JSON|-\n")
        return 2
    try:
        text = sys.stdin.read() if args[0] == "-" else Path(args[0]).read_text()
        sys.stdout.write(describe(json.loads(text)["Parameters"]))
    except (OSError, ValueError, KeyError) as error:
        sys.stderr.write(f"python -m pipeline.parameters: {args[0]}: {error!r}\n")
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
