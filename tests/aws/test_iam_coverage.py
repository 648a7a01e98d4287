"""Every AWS call the project makes, and the work AWS does on its behalf, is allowed by the
role that will make it in the synthesized dev stack: a missing permission fails here, not in
a deployment.

- deployer role: each request of the deployer scenarios (deployer_scenarios), with the
  actions AWS checks on the caller besides the named one (Application Auto Scaling's checks
  on SageMaker and CloudWatch, kms:CreateGrant for a keyed endpoint config), plus what Lambda
  does as the function (its log group, its dead-letter queue);
- model role: what the endpoint does as the model (its artifact, image, data capture, logs);
- pipeline and job roles: one execution of the deployed definition (iam_requirements);
- job role: the S3 calls processing/prepare.py makes, recorded while it runs over moto.
"""

from __future__ import annotations

import json

import boto3
import pytest
from cfn_template import ACCOUNT, REGION, ResolvedTemplate
from iam_policy import allows
from iam_requirements import (
    Arns,
    Need,
    deployer_call_needs,
    model_role_needs,
    pipeline_needs,
    s3_call_needs,
)
from pipeline_requests import parameter_assignments, step_requests, steps_in_order
from recording_clients import Call

ARNS = Arns(REGION, ACCOUNT)


def refused(needs: list[Need], role_statements: dict[str, list[dict]]) -> list[str]:
    """Each need no principal allowed to hold it does allow, once."""
    return list(
        dict.fromkeys(
            str(need)
            for need in needs
            if not any(allows(role_statements[p], need.request) for p in need.principals)
        )
    )


def _report(missing: list[str]) -> str:
    return f"{len(missing)} permission(s) missing:\n  " + "\n  ".join(missing)


# --- the deployer ------------------------------------------------------------------------------


def _function(stack: ResolvedTemplate) -> dict:
    (properties,) = [
        r["Properties"]
        for r in stack.resources.values()
        if r["Type"] == "AWS::Lambda::Function"
        and "ENDPOINT_NAME" in r["Properties"].get("Environment", {}).get("Variables", {})
    ]
    return properties


def lambda_runtime_needs(stack: ResolvedTemplate) -> list[Need]:
    """What Lambda does with the function's role: write its logs, dead-letter failed events."""
    from iam_policy import Request

    function = _function(stack)
    needs = []
    group = stack.resolve(function["LoggingConfig"]["LogGroup"])
    stream = f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:{group}:log-stream:2025/01/01/x"
    for action in ("logs:CreateLogStream", "logs:PutLogEvents"):
        needs.append(Need(("deployer",), Request(action, stream), "Lambda writes its logs"))
    dead_letters = function.get("DeadLetterConfig", {}).get("TargetArn")
    if dead_letters:
        queue_arn = stack.resolve(dead_letters)
        why = "Lambda sends failed asynchronous events to the dead-letter queue"
        needs.append(Need(("deployer",), Request("sqs:SendMessage", queue_arn), why))
        (queue,) = [
            r["Properties"]
            for name, r in stack.resources.items()
            if r["Type"] == "AWS::SQS::Queue" and stack.attribute(name, "Arn") == queue_arn
        ]
        if queue.get("KmsMasterKeyId"):
            key = stack.resolve(queue["KmsMasterKeyId"])
            needs.append(Need(("deployer",), Request("kms:GenerateDataKey", key), why))
    return needs


def test_the_deployer_role_allows_every_deployer_call(deployer_run, role_statements, stack):
    calls, _ = deployer_run
    needs = deployer_call_needs(calls, ARNS) + lambda_runtime_needs(stack)
    missing = refused(needs, role_statements)
    assert not missing, _report(missing)


def test_the_model_role_allows_what_the_endpoint_does(deployer_run, role_statements):
    calls, _ = deployer_run
    needs = model_role_needs(calls, ARNS)
    assert any(n.request.action == "s3:GetObject" for n in needs)
    missing = refused(needs, role_statements)
    assert not missing, _report(missing)


def test_registering_autoscaling_implies_the_checks_on_the_caller():
    """Application Auto Scaling checks these against the caller (iam_requirements cites the
    guide): a role without them cannot register the variant."""
    call = Call(
        "application-autoscaling",
        "RegisterScalableTarget",
        {
            "ServiceNamespace": "sagemaker",
            "ResourceId": "endpoint/bincount-dev/variant/AllTraffic",
            "ScalableDimension": "sagemaker:variant:DesiredInstanceCount",
        },
    )
    actions = {need.request.action for need in deployer_call_needs([call], ARNS)}
    assert {
        "application-autoscaling:RegisterScalableTarget",
        "sagemaker:DescribeEndpoint",
        "sagemaker:UpdateEndpointWeightsAndCapacities",
        "iam:CreateServiceLinkedRole",
    } <= actions


# --- one pipeline execution --------------------------------------------------------------------


def test_the_pipeline_and_job_roles_allow_an_execution(deployed_definition, role_statements):
    definition = deployed_definition
    (deploy,) = [s for s in steps_in_order(definition) if s["Type"] == "Lambda"]
    property_files = {
        step["Name"]: [(f["OutputName"], f["FilePath"]) for f in step["PropertyFiles"]]
        for step in steps_in_order(definition)
        if step.get("PropertyFiles")
    }
    missing: list[str] = []
    for assignment, values in parameter_assignments(definition):
        requests = step_requests(definition, values, REGION, ACCOUNT)
        needs = pipeline_needs(requests, ARNS, deploy["FunctionArn"], property_files)
        missing += [f"[{assignment}] {m}" for m in refused(needs, role_statements)]
    missing = list(dict.fromkeys(missing))
    assert not missing, _report(missing)


# --- the container scripts ---------------------------------------------------------------------


@pytest.fixture
def prepare_calls(tmp_path, monkeypatch, stack, no_network) -> list[Call]:
    """processing/prepare.py reading the public dataset's bucket and a file list in the
    project bucket (moto's server on 127.0.0.1), every S3 request it makes recorded as the
    job role's. Prepare sends plain signed GETs (processing/s3http.py), not boto3 calls, so
    its two operations are recorded where they are made: S3Http.get is GetObject,
    S3Http.list_page is ListObjectsV2 (checked against botocore's S3 model like any call)."""
    import prepare
    import s3http
    from moto.server import ThreadedMotoServer
    from service_model import validate
    from synthetic import generate

    monkeypatch.setenv("SM_RESOURCE_CONFIG_PATH", str(tmp_path / "no-resource-config.json"))
    dataset = generate(tmp_path / "data", per_class=2, seed=3, file_list=tmp_path / "list.json")
    project_bucket = stack.ref(stack.logical_id("StorageData", "AWS::S3::Bucket"))
    list_key = "bincount/file-lists/list.json"
    calls: list[Call] = []

    def record(operation: str, params: dict) -> None:
        validate("s3", operation, params)
        calls.append(Call("s3", operation, params, "job"))

    real_get, real_list = s3http.S3Http.get, s3http.S3Http.list_page

    def get(self, key, if_none_match=None):
        params = {"Bucket": self.bucket, "Key": key}
        record("GetObject", {**params, **({"IfNoneMatch": if_none_match} if if_none_match else {})})
        return real_get(self, key, if_none_match)

    def list_page(self, prefix, token=None, start_after=None, max_keys=None):
        params = {"Bucket": self.bucket, "Prefix": prefix, "ContinuationToken": token,
                  "StartAfter": start_after, "MaxKeys": max_keys}  # fmt: skip
        record("ListObjectsV2", {k: v for k, v in params.items() if v is not None})
        return real_list(self, prefix, token, start_after, max_keys)

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        endpoint = f"http://{host}:{port}"
        monkeypatch.setenv("AWS_ENDPOINT_URL", endpoint)
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
        s3 = boto3.client("s3", region_name=REGION, endpoint_url=endpoint)
        for bucket in ("aft-vbi-pds", project_bucket):
            s3.create_bucket(Bucket=bucket)
        for path in sorted(dataset.root.rglob("*")):
            if path.is_file() and path.parent.name in ("bin-images", "metadata"):
                key = path.relative_to(dataset.root).as_posix()
                s3.put_object(Bucket="aft-vbi-pds", Key=key, Body=path.read_bytes())
        s3.put_object(
            Bucket=project_bucket, Key=list_key, Body=(tmp_path / "list.json").read_bytes()
        )
        monkeypatch.setattr(s3http.S3Http, "get", get)
        monkeypatch.setattr(s3http.S3Http, "list_page", list_page)
        for file_list in (f"s3://{project_bucket}/{list_key}", "scan"):
            out = tmp_path / f"out-{len(calls)}"
            argv = [
                "--source", "s3://aft-vbi-pds", "--file-list", file_list,
                "--min-count", "1", "--max-count", "5", "--per-class-cap", "0",
                "--val-ratio", "0.2", "--test-ratio", "0.2", "--image-size", "16",
                "--shard-size", "8", "--workers", "2", "--output-dir", str(out),
                "--processes", "1",  # in this process, where the calls are recorded
                "--validate-metadata",  # every kind of object the job may read
            ]  # fmt: skip
            assert prepare.main(argv) in (0, None)
    finally:
        server.stop()
    return calls


def test_the_job_role_allows_what_prepare_calls(prepare_calls, role_statements):
    operations = {call.operation for call in prepare_calls}
    assert {"GetObject", "ListObjectsV2"} <= operations, operations
    needs = [need for call in prepare_calls for need in s3_call_needs(call, "job")]
    assert any(n.request.resource.startswith("arn:aws:s3:::aft-vbi-pds/metadata/") for n in needs)
    missing = refused(needs, role_statements)
    assert not missing, _report(missing)


def test_the_coverage_check_fails_for_a_role_without_the_permission(role_statements):
    """refused() reports a need no principal's policy allows."""
    call = Call("s3", "GetObject", {"Bucket": "someone-elses-bucket", "Key": "secret.json"})
    (missing,) = refused(s3_call_needs(call, "job"), role_statements)
    assert "s3:GetObject on arn:aws:s3:::someone-elses-bucket/secret.json" in missing
    assert json.dumps(role_statements["job"])  # the statements are resolved, plain JSON
