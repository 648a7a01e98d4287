"""The prod environment of cdk.json: staging then prod, each with its own endpoint, deployer and
model package group; promotion through a Lambda; approvers kept apart by IAM; notifications,
a dashboard and tags; still free of cdk-nag findings."""

from __future__ import annotations

import json

import pytest

from infra.config import StackConfig


@pytest.fixture(scope="module")
def prod(tmp_path_factory):
    from app import build_app, cdk_json_context

    context = cdk_json_context()
    context["bincount:environment"] = "prod"
    outdir = tmp_path_factory.mktemp("prod-synth")
    app, stack = build_app(outdir=str(outdir), context=context)
    app.synth()  # the AWS Solutions checks run here
    report = json.loads((outdir / "validation-report.json").read_text())
    assert report["pluginReports"] == [], json.dumps(report["pluginReports"])[:3000]
    template = json.loads((outdir / f"{stack.stack_name}.template.json").read_text())
    return StackConfig.from_context(context), template


def of_type(template, kind):
    return {i: r for i, r in template["Resources"].items() if r["Type"] == kind}


def functions(template, handler):
    return [
        r["Properties"]
        for r in of_type(template, "AWS::Lambda::Function").values()
        if r["Properties"].get("Handler") == handler
    ]


def statements(template):
    for logical_id, resource in template["Resources"].items():
        if resource["Type"] in {"AWS::IAM::Policy", "AWS::IAM::ManagedPolicy"}:
            for statement in resource["Properties"]["PolicyDocument"]["Statement"]:
                yield logical_id, statement


def test_each_stage_has_its_deployer_endpoint_and_group(prod):
    config, template = prod
    assert [s.name for s in config.stages] == ["staging", "prod"]
    by_stage = {
        f["Environment"]["Variables"]["STAGE"]: f["Environment"]["Variables"]
        for f in functions(template, "deployer.handler")
    }
    assert set(by_stage) == {"staging", "prod"}
    staging, production = by_stage["staging"], by_stage["prod"]
    assert (staging["ENDPOINT_NAME"], staging["MODEL_PACKAGE_GROUP"]) == (
        "bincount-staging",
        "bincount-prod",
    )
    assert (production["ENDPOINT_NAME"], production["MODEL_PACKAGE_GROUP"]) == (
        "bincount",
        "bincount-prod-prod",
    )
    # Staging smoke-tests what it deploys: promotion needs a passed test.
    assert (staging["NEXT_STAGE"], staging["SMOKE_TEST"]) == ("prod", "true")
    assert (production["NEXT_STAGE"], production["SMOKE_TEST"]) == ("", "false")
    group_resources = of_type(template, "Custom::ModelPackageGroup").values()
    groups = sorted(r["Properties"]["GroupName"] for r in group_resources)
    assert groups == ["bincount-prod", "bincount-prod-prod"]
    # Retained in prod: the versions are the record of what was approved.
    assert {
        r["Properties"]["DeleteVersions"]
        for r in of_type(template, "Custom::ModelPackageGroup").values()
    } == {"false"}
    assert len(of_type(template, "Custom::EndpointTeardown")) == 2


def test_promotion_registers_only_pending_versions_into_the_next_group(prod):
    _, template = prod
    (promoter,) = functions(template, "promotion.handler")
    variables = promoter["Environment"]["Variables"]
    assert (variables["SOURCE_GROUP"], variables["TARGET_GROUP"]) == (
        "bincount-prod",
        "bincount-prod-prod",
    )
    (register,) = [s for i, s in statements(template) if s.get("Sid") == "RegisterPending"]
    assert register["Action"] == "sagemaker:CreateModelPackage"
    assert register["Condition"] == {
        "StringEquals": {"sagemaker:ModelApprovalStatus": "PendingManualApproval"}
    }
    assert "model-package/bincount-prod-prod/*" in json.dumps(register["Resource"])
    # It publishes to the KMS-encrypted topic, which takes a data key of that key.
    (topic_key,) = [s for i, s in statements(template) if s.get("Sid") == "TopicKey"]
    assert set(topic_key["Action"]) == {"kms:GenerateDataKey", "kms:Decrypt"}


def test_the_pipeline_cannot_approve_its_own_versions_in_prod(prod):
    _, template = prod
    (deny,) = [
        s
        for i, s in statements(template)
        if i.startswith("RolesPipelineRole") and s.get("Sid") == "RegisterOnlyPending"
    ]
    assert deny["Effect"] == "Deny" and deny["Action"] == "sagemaker:CreateModelPackage"
    assert deny["Condition"] == {
        "StringNotEquals": {"sagemaker:ModelApprovalStatus": "PendingManualApproval"}
    }
    (pipeline,) = of_type(template, "AWS::SageMaker::Pipeline").values()
    body, _ = pipeline["Properties"]["PipelineDefinition"]["PipelineDefinitionBody"]["Fn::Sub"]
    (status,) = [p for p in json.loads(body)["Parameters"] if p["Name"] == "ModelApprovalStatus"]
    assert status["EnumValues"] == ["PendingManualApproval"]


def test_personas_keep_approvers_apart(prod):
    _, template = prod
    policies = {
        r["Properties"]["ManagedPolicyName"]: r["Properties"]["PolicyDocument"]["Statement"]
        for r in of_type(template, "AWS::IAM::ManagedPolicy").values()
    }
    assert set(policies) == {
        "bincount-prod-read-only",
        "bincount-prod-data-scientist",
        "bincount-prod-release-approver",
    }

    def approvable(name):
        return json.dumps(
            [s["Resource"] for s in policies[name] if "sagemaker:UpdateModelPackage" in s["Action"]]
        )

    assert "bincount-prod/*" in approvable("bincount-prod-data-scientist")
    assert "bincount-prod-prod/" not in approvable("bincount-prod-data-scientist")
    assert "bincount-prod-prod/*" in approvable("bincount-prod-release-approver")
    assert "bincount-prod/*" not in approvable("bincount-prod-release-approver").replace(
        "bincount-prod-prod/*", ""
    )
    assert approvable("bincount-prod-read-only") == "[]"
    promote = [s for s in policies["bincount-prod-data-scientist"] if s["Sid"] == "Promote"]
    assert promote and promote[0]["Action"] == "lambda:InvokeFunction"
    for name, found in policies.items():
        actions = json.dumps([s["Action"] for s in found])
        assert "CreateModelPackage" not in actions, name


def test_notifications_reach_one_encrypted_topic(prod):
    _, template = prod
    ((topic_id, topic),) = of_type(template, "AWS::SNS::Topic").items()
    assert "KmsMasterKeyId" in topic["Properties"]
    for alarm_id, alarm in of_type(template, "AWS::CloudWatch::Alarm").items():
        assert alarm["Properties"]["AlarmActions"] == [{"Ref": topic_id}], alarm_id
    patterns = {
        i: r["Properties"]["EventPattern"]
        for i, r in of_type(template, "AWS::Events::Rule").items()
        if i.startswith("Notifications")
    }
    failures = next(p for i, p in patterns.items() if "PipelineFailures" in i)
    assert failures["detail"]["currentPipelineExecutionStatus"] == ["Failed", "Stopped"]
    waiting = next(p for i, p in patterns.items() if "ApprovalsWaiting" in i)
    assert waiting["detail"]["ModelPackageGroupName"] == ["bincount-prod", "bincount-prod-prod"]
    assert waiting["detail"]["ModelApprovalStatus"] == ["PendingManualApproval"]
    for function in functions(template, "deployer.handler"):
        assert function["Environment"]["Variables"]["TOPIC_ARN"] == {"Ref": topic_id}


def test_dashboard_shows_every_stage_and_the_pipeline(prod):
    _, template = prod
    ((_, dashboard),) = of_type(template, "AWS::CloudWatch::Dashboard").items()
    body = json.dumps(dashboard["Properties"]["DashboardBody"])
    for title in ("staging (bincount-staging)", "prod (bincount)"):
        assert f"{title}: invocations and errors" in body
    assert "ExecutionFailed" in body and "val_acc" in body


def test_everything_carries_the_cost_tags(prod):
    config, template = prod
    tagged = [
        r
        for r in template["Resources"].values()
        if r["Type"] in {"AWS::KMS::Key", "AWS::SNS::Topic", "AWS::Lambda::Function"}
    ]
    for resource in tagged:
        tags = {t["Key"]: t["Value"] for t in resource["Properties"]["Tags"]}
        assert tags["project"] == "bincount" and tags["environment"] == "prod"
        assert tags["cost-center"] == config.tags["cost-center"]
    for function in functions(template, "deployer.handler"):
        assert json.loads(function["Environment"]["Variables"]["TAGS"]) == config.all_tags


def test_dev_serves_serverless_and_needs_no_instance_quota():
    from app import cdk_json_context

    dev = StackConfig.from_context(cdk_json_context())
    (stage,) = dev.stages
    assert stage.serverless and stage.serverless_memory_mb == 3072


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"serverless_memory_mb": 1000}, "serverless_memory_mb must be one of"),
        ({"next_stages": [{"name": "live", "endpoint_name": "x"}]}, "distinct stage names"),
        ({"next_stages": [{"name": "p", "endpoint_name": "bincount"}]}, "distinct endpoint"),
        ({"next_stages": [{"name": "p", "endpoint": "x"}]}, "unknown stage settings"),
        ({"notification_emails": ["not-an-address"]}, "not an email address"),
        ({"tags": {"aws:x": "y"}}, "no aws: prefix"),
        (
            {
                "serverless_memory_mb": 2048,
                "vpc_id": "vpc-1",
                "subnet_ids": ["subnet-1"],
                "security_group_ids": ["sg-1"],
            },
            "which VPC mode cannot use",
        ),
    ],
)
def test_bad_stage_settings_are_refused_by_name(change, message):
    with pytest.raises(ValueError, match=message):
        StackConfig.from_dict(change)
