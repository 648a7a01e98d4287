"""The requests SageMaker Pipelines makes from a definition's job steps, with every pipeline
expression replaced by the value it takes in one execution.

Parameters take their defaults, or an assignment's values; `Execution.PipelineExecutionId`
is a fixed id; a step's properties are what SageMaker would report for the request it made
(a processing job's outputs as requested, a training job's model at
`<S3OutputPath>/<job name>/output/model.tar.gz`, a registered version's ARN). The local
runner's evaluator (pipeline.local.expressions) resolves the expressions.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from pipeline.local.expressions import Scope, evaluate

EXECUTION_ID = "a1b2c3d4e5f6"
JOB_SUFFIX = "1a2B3c4D5e"
# What each job step's Arguments become: (service operation, the name SageMaker adds).
OPERATIONS = {
    "Processing": ("CreateProcessingJob", "ProcessingJobName"),
    "Training": ("CreateTrainingJob", "TrainingJobName"),
    "RegisterModel": ("CreateModelPackage", None),
    "Model": ("CreateModel", "ModelName"),
}


@dataclass(frozen=True)
class StepRequest:
    step: str
    step_type: str
    operation: str
    params: dict
    # The step as the definition has it, expressions unresolved.
    arguments: Mapping[str, Any]


def job_name(step: str) -> str:
    return f"pipelines-{EXECUTION_ID}-{step}-{JOB_SUFFIX}"


def steps_in_order(definition: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """Every step, condition branches flattened in place (if-steps, then else-steps)."""
    out: list[Mapping[str, Any]] = []
    for step in definition["Steps"]:
        out.append(step)
        if step["Type"] == "Condition":
            arguments = step["Arguments"]
            out.extend(steps_in_order({"Steps": arguments.get("IfSteps", [])}))
            out.extend(steps_in_order({"Steps": arguments.get("ElseSteps", [])}))
    return out


def parameter_assignments(definition: Mapping[str, Any]) -> Iterator[tuple[str, dict]]:
    """(label, values): every parameter at its default, then each EnumValue of each parameter
    that has them with all others at their defaults."""
    declared = definition.get("Parameters", [])
    defaults = {p["Name"]: p.get("DefaultValue") for p in declared}
    yield "defaults", dict(defaults)
    for parameter in declared:
        for value in parameter.get("EnumValues") or []:
            if value != parameter.get("DefaultValue"):
                yield f"{parameter['Name']}={value}", {**defaults, parameter["Name"]: value}


def step_requests(
    definition: Mapping[str, Any], parameters: Mapping[str, Any], region: str, account: str
) -> list[StepRequest]:
    """The request of every job step, in execution order, for these parameter values."""
    scope = Scope(
        parameters=dict(parameters),
        execution={
            "PipelineExecutionId": EXECUTION_ID,
            "PipelineExecutionArn": f"arn:aws:sagemaker:{region}:{account}:pipeline/"
            f"{definition.get('PipelineName', 'pipeline')}/execution/{EXECUTION_ID}",
        },
    )
    requests: list[StepRequest] = []
    versions = 0
    for step in steps_in_order(definition):
        kind = step["Type"]
        if kind not in OPERATIONS:
            continue
        operation, name_member = OPERATIONS[kind]
        params = evaluate(step["Arguments"], scope, f"Steps.{step['Name']}.Arguments")
        if name_member:
            params = {name_member: job_name(step["Name"]), **params}
        requests.append(StepRequest(step["Name"], kind, operation, params, step["Arguments"]))
        scope.steps[step["Name"]] = _properties(kind, params, region, account, versions + 1)
        versions += kind == "RegisterModel"
    return requests


def _properties(kind: str, params: dict, region: str, account: str, version: int) -> dict:
    """What SageMaker reports for the job it started from `params` (Describe* shaped)."""
    if kind == "Training":
        output = params["OutputDataConfig"]["S3OutputPath"].rstrip("/")
        model = f"{output}/{params['TrainingJobName']}/output/model.tar.gz"
        return {**params, "ModelArtifacts": {"S3ModelArtifacts": model}}
    if kind == "RegisterModel":
        group = params["ModelPackageGroupName"]
        arn = f"arn:aws:sagemaker:{region}:{account}:model-package/{group.lower()}/{version}"
        return {**params, "ModelPackageArn": arn}
    return dict(params)


def load(definition_text: str, substitutions: Mapping[str, str]) -> dict:
    """The definition JSON with its CloudFormation placeholders (`${BucketName}`, ...)
    replaced, as Fn::Sub replaces them at deploy time."""
    from cfn_template import fn_sub

    return json.loads(fn_sub(definition_text, substitutions))
