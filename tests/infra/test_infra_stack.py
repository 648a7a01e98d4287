"""The synthesized template: every resource and policy the stack promises."""

from __future__ import annotations

import json
import re

import pytest
from aws_cdk.assertions import Match

from infra.config import StackConfig

ENV = StackConfig.from_context(json.loads((__import__("app").CDK_JSON).read_text())["context"])


def only(resources, kind):
    found = resources.get(kind, [])
    assert len(found) == 1, f"expected one {kind}, found {len(found)}"
    return found[0]


def statements(template_json):
    """Every IAM statement in the template: identity policies, roles and resource policies."""
    for logical_id, resource in template_json["Resources"].items():
        props = resource.get("Properties", {})
        documents = [props.get("PolicyDocument"), props.get("KeyPolicy")]
        documents += [p["PolicyDocument"] for p in props.get("Policies", [])]
        for document in filter(None, documents):
            for statement in document["Statement"]:
                yield logical_id, statement


def as_list(value):
    return value if isinstance(value, list) else [value]


def data_bucket(resources):
    return next(p for i, p in resources["AWS::S3::Bucket"] if "KMSMasterKeyID" in json.dumps(p))


def test_key_rotates_and_lets_cloudwatch_logs_use_it(resources):
    _, key = only(resources, "AWS::KMS::Key")
    assert key["EnableKeyRotation"] is True
    logs = [
        s for s in key["KeyPolicy"]["Statement"] if "logs." in json.dumps(s.get("Principal", {}))
    ]
    assert logs and "kms:GenerateDataKey*" in logs[0]["Action"]


def test_data_bucket_is_kms_encrypted_private_versioned_and_logged(resources, template_json):
    bucket = data_bucket(resources)
    (rule,) = bucket["BucketEncryption"]["ServerSideEncryptionConfiguration"]
    assert rule["ServerSideEncryptionByDefault"]["SSEAlgorithm"] == "aws:kms"
    key_id = only(resources, "AWS::KMS::Key")[0]
    assert rule["ServerSideEncryptionByDefault"]["KMSMasterKeyID"] == {
        "Fn::GetAtt": [key_id, "Arn"]
    }
    assert bucket["PublicAccessBlockConfiguration"] == {
        "BlockPublicAcls": True,
        "BlockPublicPolicy": True,
        "IgnorePublicAcls": True,
        "RestrictPublicBuckets": True,
    }
    assert bucket["VersioningConfiguration"] == {"Status": "Enabled"}
    log_bucket_ref = bucket["LoggingConfiguration"]["DestinationBucketName"]["Ref"]
    log_bucket = template_json["Resources"][log_bucket_ref]["Properties"]
    (log_rule,) = log_bucket["BucketEncryption"]["ServerSideEncryptionConfiguration"]
    assert log_rule["ServerSideEncryptionByDefault"]["SSEAlgorithm"] == "AES256"
    assert log_bucket["PublicAccessBlockConfiguration"]["BlockPublicPolicy"] is True


def test_lifecycle_expires_intermediate_outputs_and_noncurrent_versions(resources):
    # Changed deliberately: executions/ (models that versions and endpoints serve) never
    # expires; the expiry rule is now on intermediate/.
    rules = {r["Id"]: r for r in data_bucket(resources)["LifecycleConfiguration"]["Rules"]}
    outputs = rules["ExpireIntermediateOutputs"]
    assert outputs["Prefix"] == f"{ENV.s3_prefix}/intermediate/"
    assert outputs["ExpirationInDays"] == ENV.execution_outputs_days
    noncurrent = rules["ExpireNoncurrentVersions"]
    assert noncurrent["NoncurrentVersionExpiration"]["NoncurrentDays"] == ENV.noncurrent_days


def test_no_lifecycle_rule_expires_model_artifacts(resources):
    """Train writes model.tar.gz under <prefix>/executions/<id>/Train/: no current-version
    expiry may reach it (a rule without a prefix or filter covers the whole bucket)."""
    model_key = f"{ENV.s3_prefix}/executions/pipelines-abc/Train/job/output/model.tar.gz"
    for rule in data_bucket(resources)["LifecycleConfiguration"]["Rules"]:
        if "ExpirationInDays" not in rule and "ExpirationDate" not in rule:
            continue
        prefix = rule.get("Prefix", (rule.get("Filter") or {}).get("Prefix", ""))
        assert prefix and not model_key.startswith(prefix), rule["Id"]


def test_intermediate_outputs_outlive_the_pipeline_step_cache():
    from infra.config import STEP_CACHE_DAYS
    from pipeline.settings import Settings

    # The constant mirrors pipeline/settings.py's cache expiry.
    assert Settings.__dataclass_fields__["cache_expire_after"].default == f"P{STEP_CACHE_DAYS}D"
    assert ENV.execution_outputs_days > STEP_CACHE_DAYS
    with pytest.raises(ValueError, match="execution_outputs_days must exceed"):
        StackConfig(execution_outputs_days=STEP_CACHE_DAYS)


def test_destroy_empties_both_buckets_so_they_can_be_deleted(template_json):
    assert ENV.removal == "destroy"
    emptied = {
        r["Properties"]["BucketName"]["Ref"]
        for r in template_json["Resources"].values()
        if r["Type"] == "Custom::S3AutoDeleteObjects"
    }
    buckets = {i for i, r in template_json["Resources"].items() if r["Type"] == "AWS::S3::Bucket"}
    assert emptied == buckets and len(buckets) == 2


def test_retain_keeps_the_buckets_and_their_objects(tmp_path):
    from aws_cdk.assertions import Template

    from app import build_app, cdk_json_context

    context = {**cdk_json_context(), "bincount:environment": "prod"}
    _app, stack = build_app(outdir=str(tmp_path), context=context)
    template = Template.from_stack(stack)
    template.resource_count_is("Custom::S3AutoDeleteObjects", 0)


def test_both_bucket_policies_deny_requests_without_tls(resources):
    # The one s3:* in the template: a Deny of every action over plain HTTP.
    policies = resources["AWS::S3::BucketPolicy"]
    assert len(policies) == 2
    for _, policy in policies:
        denials = [
            s
            for s in policy["PolicyDocument"]["Statement"]
            if s["Effect"] == "Deny"
            and s.get("Condition", {}).get("Bool", {}).get("aws:SecureTransport") == "false"
        ]
        assert denials, f"no TLS-only statement in {policy['Bucket']}"


def test_removal_follows_the_context_and_defaults_to_retain(template_json):
    assert StackConfig().removal == "retain"
    expected = {"destroy": "Delete", "retain": "Retain"}[ENV.removal]
    for kind in ("AWS::S3::Bucket", "AWS::KMS::Key"):
        for logical_id, resource in template_json["Resources"].items():
            if resource["Type"] == kind:
                assert resource["DeletionPolicy"] == expected, logical_id


def test_no_wildcard_s3_action_and_no_managed_full_access(template_json):
    # Changed deliberately: the CDK's own auto-delete provider (removal destroy, dev) gets
    # s3:GetBucket*, s3:List*, s3:DeleteObject* in the bucket policies, and only it.
    provider_role = "CustomS3AutoDeleteObjectsCustomResourceProviderRole"
    allows = [
        (i, s)
        for i, s in statements(template_json)
        if s["Effect"] == "Allow" and provider_role not in json.dumps(s.get("Principal", {}))
    ]
    assert len(allows) > 30
    for logical_id, statement in allows:
        for action in as_list(statement.get("Action", [])):
            if action.lower().startswith("s3:"):
                assert "*" not in action, f"{logical_id}: wildcard S3 action {action}"
    for logical_id, resource in template_json["Resources"].items():
        for arn in resource.get("Properties", {}).get("ManagedPolicyArns", []):
            assert "FullAccess" not in json.dumps(arn), f"{logical_id} uses {arn}"


def test_pass_role_only_for_the_job_and_model_roles_to_sagemaker(template_json, resources):
    # Changed deliberately: the deployer passes the model role now, not the job role.
    job_role = next(i for i, _ in resources["AWS::IAM::Role"] if i.startswith("RolesJobRole"))
    model_role = next(i for i, _ in resources["AWS::IAM::Role"] if i.startswith("RolesModelRole"))
    passes = {
        i.split("DefaultPolicy")[0]: s
        for i, s in statements(template_json)
        if "iam:PassRole" in as_list(s["Action"])
    }
    assert len(passes) == 2  # the pipeline (jobs) and the deployer (model)
    assert passes["RolesPipelineRole"]["Resource"] == {"Fn::GetAtt": [job_role, "Arn"]}
    assert passes["DeployerRole"]["Resource"] == {"Fn::GetAtt": [model_role, "Arn"]}
    for statement in passes.values():
        assert statement["Condition"] == {
            "StringEquals": {"iam:PassedToService": "sagemaker.amazonaws.com"}
        }


def _role_statements(template_json, role_prefix):
    return {
        s.get("Sid", ""): s
        for i, s in statements(template_json)
        if i.startswith(f"{role_prefix}DefaultPolicy")
    }


def _object_arns(statement):
    """The key patterns after the bucket ARN, e.g. '/bincount/executions/*'."""
    return sorted(
        part["Fn::Join"][1][1] if isinstance(part, dict) else part
        for part in as_list(statement["Resource"])
    )


def test_model_role_reads_models_writes_capture_and_nothing_else_in_s3(template_json):
    model = _role_statements(template_json, "RolesModelRole")
    s3_actions = {
        (sid, action)
        for sid, s in model.items()
        for action in as_list(s["Action"])
        if action.startswith("s3:")
    }
    assert s3_actions == {
        ("ReadModelArtifacts", "s3:GetObject"),
        ("DataCaptureObjects", "s3:PutObject"),
        ("DataCaptureObjects", "s3:AbortMultipartUpload"),
    }
    assert _object_arns(model["ReadModelArtifacts"]) == [f"/{ENV.s3_prefix}/executions/*"]
    assert _object_arns(model["DataCaptureObjects"]) == [
        f"/{stage.data_capture_prefix}/*" for stage in ENV.stages
    ]
    assert "/pytorch-inference" in json.dumps(model["PullInferenceImage"]["Resource"])
    assert "pytorch-training" not in json.dumps(model)
    assert ":log-group:/aws/sagemaker/Endpoints/*" in json.dumps(model["EndpointLogs"]["Resource"])
    assert "kms:Decrypt" in model["UseProjectKey"]["Action"]


def test_job_role_reads_the_project_but_writes_only_step_outputs(template_json):
    job = _role_statements(template_json, "RolesJobRole")
    writes = [
        s for s in job.values() if {"s3:PutObject", "s3:DeleteObject"} & set(as_list(s["Action"]))
    ]
    assert len(writes) == 1
    assert _object_arns(writes[0]) == [
        f"/{ENV.s3_prefix}/executions/*",
        f"/{ENV.s3_prefix}/intermediate/*",
    ]
    assert job["ReadProjectObjects"]["Action"] == "s3:GetObject"
    assert "DataCaptureObjects" not in job


def test_deployer_may_only_read_the_rollback_alarms(template_json, resources):
    deployer = _role_statements(template_json, "DeployerRole")
    alarms = [i for i, _ in resources["AWS::CloudWatch::Alarm"]]
    for sid, statement in deployer.items():
        text = json.dumps(statement["Resource"])
        if any(alarm in text for alarm in alarms):
            assert statement["Action"] == "cloudwatch:DescribeAlarms", sid
    autoscaling = deployer["AutoscalingAlarms"]
    assert "TargetTracking-endpoint/" in json.dumps(autoscaling["Resource"])
    assert not any(alarm in json.dumps(autoscaling["Resource"]) for alarm in alarms)


def test_job_role_reads_the_public_dataset_and_pulls_pytorch_images(template_json):
    job = {s["Sid"]: s for i, s in statements(template_json) if i.startswith("RolesJobRoleDefault")}
    public = json.dumps(job["ReadPublicBinImages"]["Resource"])
    assert ":s3:::aft-vbi-pds" in public and ":s3:::aft-vbi-pds/*" in public
    assert sorted(job["ReadPublicBinImages"]["Action"]) == ["s3:GetObject", "s3:ListBucket"]
    images = json.dumps(job["PullFrameworkImages"]["Resource"])
    assert f":ecr:{ENV.region}:763104351884:repository/pytorch-training" in images
    assert job["SageMakerMetrics"]["Condition"] == {
        "StringLike": {"cloudwatch:namespace": ["/aws/sagemaker/*"]}
    }
    assert ":log-group:/aws/sagemaker/*" in json.dumps(job["SageMakerLogs"]["Resource"])


def test_pipeline_role_invokes_only_the_deployer(template_json, resources):
    invokes = [
        (i, s)
        for i, s in statements(template_json)
        if "lambda:InvokeFunction" in as_list(s["Action"]) and i.startswith("RolesPipelineRole")
    ]
    assert len(invokes) == 1
    logical_id, statement = invokes[0]
    assert logical_id.startswith("RolesPipelineRoleDefault")
    deployer = next(
        i for i, p in resources["AWS::Lambda::Function"] if p["Handler"] == "deployer.handler"
    )
    assert statement["Resource"] == {"Fn::GetAtt": [deployer, "Arn"]}


def test_model_package_group_is_adopted_and_removed_as_the_environment_says(template_json):
    """A custom resource, not AWS::SageMaker::ModelPackageGroup: a retained group would make
    the next deployment fail with "already exists"; dev (removal destroy) deletes it."""
    resources = template_json["Resources"]
    assert not [r for r in resources.values() if r["Type"] == "AWS::SageMaker::ModelPackageGroup"]
    (group,) = [r for r in resources.values() if r["Type"] == "Custom::ModelPackageGroup"]
    assert group["Properties"]["GroupName"] == ENV.resource_prefix
    assert group["Properties"]["DeleteVersions"] == (
        "true" if ENV.removal == "destroy" else "false"
    )
    (handler,) = [
        r["Properties"]
        for r in resources.values()
        if r["Type"] == "AWS::Lambda::Function"
        and r["Properties"].get("Handler") == "registry.on_event"
    ]
    assert handler["Runtime"] == "python3.14"


def test_deployer_lambda_runs_python_3_14_with_its_settings(template):
    template.has_resource_properties(
        "AWS::Lambda::Function",
        {
            "Runtime": "python3.14",
            "Handler": "deployer.handler",
            "Timeout": 900,
            "Environment": Match.any_value(),
        },
    )
    template.has_resource_properties(
        "AWS::Lambda::Function",
        {
            "Handler": "deployer.handler",
            "Environment": {
                "Variables": Match.object_like(
                    {
                        "ENDPOINT_NAME": ENV.endpoint_name,
                        "INSTANCE_TYPE": ENV.endpoint_instance_type,
                        "ALARM_NAMES": f"{ENV.resource_prefix}-{ENV.endpoint_name}-invocation-5xx,"
                        f"{ENV.resource_prefix}-{ENV.endpoint_name}-model-latency",
                        "MIN_CAPACITY": str(ENV.autoscaling_min),
                        "MAX_CAPACITY": str(ENV.autoscaling_max),
                    }
                )
            },
        },
    )
    # 5xx and latency (they roll a blue/green update back), and the dead letters.
    template.resource_count_is("AWS::CloudWatch::Alarm", 3)


def test_approval_rule_sends_every_status_change_of_this_group(resources):
    """The deployer reconciles from the registry: any status change (set back to pending
    too) may change what should be live."""
    (rule,) = [p for i, p in resources["AWS::Events::Rule"] if i.startswith("DeployerApprovalRule")]
    assert rule["EventPattern"] == {
        "source": ["aws.sagemaker"],
        "detail-type": ["SageMaker Model Package State Change"],
        "detail": {"ModelPackageGroupName": [ENV.resource_prefix]},
    }
    (target,) = rule["Targets"]
    assert target["Arn"]["Fn::GetAtt"][0].startswith("DeployerFunction")


def test_deployer_runs_one_at_a_time_and_keeps_lost_events_in_a_dead_letter_queue(
    resources, template_json
):
    (queue_id, queue) = only(resources, "AWS::SQS::Queue")
    key_id = only(resources, "AWS::KMS::Key")[0]
    assert queue["KmsMasterKeyId"] == {"Fn::GetAtt": [key_id, "Arn"]}
    (_, queue_policy) = only(resources, "AWS::SQS::QueuePolicy")
    assert any(
        s["Effect"] == "Deny"
        and s.get("Condition", {}).get("Bool", {}).get("aws:SecureTransport") == "false"
        for s in queue_policy["PolicyDocument"]["Statement"]
    )
    (_, function) = next(
        (i, p)
        for i, p in resources["AWS::Lambda::Function"]
        if p.get("Handler") == "deployer.handler"
    )
    # No reserved concurrency of 1: the Deploy step invokes synchronously and would be throttled
    # while the approval rule's invocation waits on the endpoint; the deployer tolerates the race.
    assert "ReservedConcurrentExecutions" not in function
    assert function["DeadLetterConfig"]["TargetArn"] == {"Fn::GetAtt": [queue_id, "Arn"]}
    deployer_rules = [r for i, r in resources["AWS::Events::Rule"] if i.startswith("Deployer")]
    assert len(deployer_rules) == 3 * len(ENV.stages)
    for rule in deployer_rules:
        (target,) = rule["Targets"]
        assert target["DeadLetterConfig"]["Arn"] == {"Fn::GetAtt": [queue_id, "Arn"]}
        assert target["RetryPolicy"]["MaximumRetryAttempts"] == 2
    key_policy = only(resources, "AWS::KMS::Key")[1]["KeyPolicy"]["Statement"]
    assert any("events.amazonaws.com" in json.dumps(s.get("Principal")) for s in key_policy)


def test_endpoint_state_rule_and_schedule_invoke_the_deployer(resources):
    """Every state change of this endpoint (in service, failed, rolled back) and a periodic
    safety net reach the reconciler."""
    (rule,) = [
        p for i, p in resources["AWS::Events::Rule"] if i.startswith("DeployerEndpointStateRule")
    ]
    assert rule["EventPattern"] == {
        "source": ["aws.sagemaker"],
        "detail-type": ["SageMaker Endpoint State Change"],
        "detail": {"EndpointName": [ENV.endpoint_name]},
    }
    (schedule,) = [
        p for i, p in resources["AWS::Events::Rule"] if i.startswith("DeployerReconcileSchedule")
    ]
    assert schedule["ScheduleExpression"] == f"rate({ENV.reconcile_minutes} minutes)"
    for found in (rule, schedule):
        (target,) = found["Targets"]
        assert target["Arn"]["Fn::GetAtt"][0].startswith("DeployerFunction")


def test_dead_letters_raise_an_alarm(resources):
    (queue_id, _) = only(resources, "AWS::SQS::Queue")
    (alarm,) = [p for i, p in resources["AWS::CloudWatch::Alarm"] if "DeadLetters" in i]
    assert alarm["MetricName"] == "ApproximateNumberOfMessagesVisible"
    assert alarm["Dimensions"] == [
        {"Name": "QueueName", "Value": {"Fn::GetAtt": [queue_id, "QueueName"]}}
    ]
    assert alarm["Threshold"] == 1


def test_pipeline_body_has_the_steps_and_substitutes_stack_resources(resources, template_json):
    logical_id, pipeline = only(resources, "AWS::SageMaker::Pipeline")
    body, variables = pipeline["PipelineDefinition"]["PipelineDefinitionBody"]["Fn::Sub"]
    definition = json.loads(body)
    names = {s["Name"] for s in definition["Steps"]}
    assert names == {"Prepare", "Train", "Evaluate", "QualityGate"}
    gate = next(s for s in definition["Steps"] if s["Name"] == "QualityGate")
    branch_names = {
        s["Name"] for s in gate["Arguments"]["IfSteps"] + gate["Arguments"]["ElseSteps"]
    }
    assert branch_names == {"Register", "Deploy", "QualityGateFailed"}
    bucket = next(i for i, p in resources["AWS::S3::Bucket"] if "KMSMasterKeyID" in json.dumps(p))
    job_role = next(i for i, _ in resources["AWS::IAM::Role"] if i.startswith("RolesJobRole"))
    assert variables["BucketName"] == {"Ref": bucket}
    assert variables["JobRoleName"] == {"Ref": job_role}
    assert variables["DeployerFunctionArn"]["Fn::GetAtt"][0].startswith("DeployerFunction")
    assert "s3://${BucketName}/" in body
    assert ":role/${JobRoleName}" in body
    # Every placeholder in the body is a Fn::Sub variable or a pseudo parameter.
    for name in set(re.findall(r"\$\{([^}]+)\}", body)):
        assert name in variables or name.startswith("AWS::"), name
    depends = set(template_json["Resources"][logical_id]["DependsOn"])
    assert any(d.startswith("PipelineCodeCustomResource") for d in depends)


def test_code_is_uploaded_to_the_keys_the_definition_names(resources, cloud_assembly):
    _, upload = only(resources, "Custom::CDKBucketDeployment")
    assert upload["Prune"] is False
    assert upload["DestinationBucketKeyPrefix"] == f"{ENV.s3_prefix}/"
    ((_, pipeline),) = resources["AWS::SageMaker::Pipeline"]
    body = pipeline["PipelineDefinition"]["PipelineDefinitionBody"]["Fn::Sub"][0]
    (asset,) = {
        p.parent.relative_to(cloud_assembly).parts[0]
        for p in cloud_assembly.glob("asset.*/**/sourcedir.tar.gz")
    }
    uploaded = {
        f"{ENV.s3_prefix}/{p.relative_to(cloud_assembly / asset).as_posix()}"
        for p in (cloud_assembly / asset).rglob("*")
        if p.is_file()
    }
    code_prefix = f"s3://${{BucketName}}/{ENV.s3_prefix}/code/"
    named = {
        uri.removeprefix("s3://${BucketName}/")
        for uri in re.findall(r'"(s3://[^"]+)"', body)
        if uri.startswith(code_prefix)
    }
    assert sum(key.endswith("sourcedir.tar.gz") for key in uploaded) == 2
    # Each code key or prefix the definition names is there, and nothing else is.
    for key in named:
        assert any(u == key or u.startswith(key.rstrip("/") + "/") for u in uploaded), key
    weights = f"{ENV.s3_prefix}/weights/"  # the Train channel's folders, named by parameter
    assert {k for k in uploaded if k.startswith(weights)} == {
        f"{weights}imagenet/README.txt",
        f"{weights}none/README.txt",
    }
    for key in uploaded - {k for k in uploaded if k.startswith(weights)}:
        assert any(key == n or key.startswith(n.rstrip("/") + "/") for n in named), key


def test_outputs_name_what_a_person_needs(template_json):
    assert set(template_json["Outputs"]) >= {
        "BucketName",
        "PipelineRoleArn",
        "JobRoleArn",
        "ModelRoleArn",
        "PipelineName",
        "ModelPackageGroupName",
        "EndpointName",
        "DeployerFunctionName",
    }


@pytest.mark.parametrize("bad", [{"removal": "keep"}, {"endpoint_name": "Has_Caps"}, {"oops": 1}])
def test_bad_context_is_refused_with_its_name(bad):
    with pytest.raises(ValueError, match=next(iter(bad)) if "oops" not in bad else "oops"):
        StackConfig.from_dict(bad)


def test_destroying_the_stack_tears_down_what_the_deployer_made(template_json):
    """The endpoint, configs, models and scalable target live outside CloudFormation: a
    custom resource backed by the deployer deletes them, after the rules, the schedule and the
    pipeline are gone (no late event redeploys) and before the model role and key."""
    resources = template_json["Resources"]
    (teardown_id,) = [i for i, r in resources.items() if r["Type"] == "Custom::EndpointTeardown"]
    teardown = resources[teardown_id]
    assert teardown["Properties"]["EndpointName"] == ENV.endpoint_name
    depends = set(teardown.get("DependsOn", []))
    model_role = next(i for i in resources if i.startswith("RolesModelRole"))
    key = next(i for i, r in resources.items() if r["Type"] == "AWS::KMS::Key")
    assert {model_role, key} <= depends
    for logical_id, resource in resources.items():
        deploys = logical_id.startswith("Deployer") and resource["Type"] == "AWS::Events::Rule"
        if deploys or resource["Type"] == "AWS::SageMaker::Pipeline":
            assert teardown_id in resource.get("DependsOn", []), logical_id
    (provider_fn,) = [
        r["Properties"]
        for i, r in resources.items()
        if r["Type"] == "AWS::Lambda::Function" and i.startswith("DeployerTeardownProvider")
    ]
    deployer = next(
        i
        for i, r in resources.items()
        if r["Type"] == "AWS::Lambda::Function"
        and r["Properties"].get("Handler") == "deployer.handler"
    )
    assert deployer in json.dumps(provider_fn["Environment"])


def test_deployer_gets_its_group_and_a_volume_key_only_where_the_type_takes_one(resources):
    from pipeline.instance_types import accepts_volume_kms_key

    function = next(
        p for _, p in resources["AWS::Lambda::Function"] if p.get("Handler") == "deployer.handler"
    )
    variables = function["Environment"]["Variables"]
    assert variables["MODEL_PACKAGE_GROUP"] == ENV.resource_prefix
    assert int(variables["WAIT_SECONDS"]) <= 300
    first = ENV.stages[0]
    if accepts_volume_kms_key(first.instance_type) and not first.serverless:
        assert variables["VOLUME_KMS_KEY_ARN"] == variables["KMS_KEY_ARN"]
    else:
        assert variables["VOLUME_KMS_KEY_ARN"] == ""
