"""What IAM must allow, and whom, for the calls the project makes and the work AWS does on its
behalf: each recorded call becomes its own action on its resource plus the actions AWS
documents as implied by it; each pipeline step request becomes what the pipeline role (which
calls the API) and the job role (which the job runs as) need.

Principals are labels: "pipeline", "job", "model", "deployer", "monitor" (a stage's
monitoring jobs), "retrain" (the retraining guard). A `Need` lists the principals
any one of which may hold the permission (AWS accepts either the caller or the passed role for
kms:CreateGrant on job volumes).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from iam_policy import Request
from pipeline_requests import StepRequest
from recording_clients import Call

SAGEMAKER_SERVICE = "sagemaker.amazonaws.com"
AUTOSCALING_SERVICE = "sagemaker.application-autoscaling.amazonaws.com"

# Application Auto Scaling checks permissions on the target service and CloudWatch against
# the CALLER of RegisterScalableTarget / PutScalingPolicy: "IAM users must be granted the
# required permissions for Amazon CloudWatch and for each target service", for SageMaker
# endpoints sagemaker:DescribeEndpoint, sagemaker:DescribeEndpointConfig,
# sagemaker:UpdateEndpointWeightsAndCapacities, cloudwatch:DescribeAlarms, PutMetricAlarm,
# DeleteAlarms. Application Auto Scaling User Guide, "Permissions required for API actions on
# target services and CloudWatch":
# https://docs.aws.amazon.com/autoscaling/application/userguide/security_iam_id-based-policy-examples.html#permissions-for-sagemaker-endpoints
AUTOSCALING_DOC = (
    "docs.aws.amazon.com/autoscaling/application/userguide/"
    "security_iam_id-based-policy-examples.html"
)
# SageMaker API permissions reference: CreateProcessingJob / CreateTrainingJob need
# kms:CreateGrant "required only if the associated ProcessingResources / ResourceConfig has a
# specified VolumeKmsKeyId and the associated role does not have a policy that permits this
# action" (so the caller or the job role); CreateEndpoint needs kms:CreateGrant on the caller
# "required only if the associated EndPointConfig has a KmsKeyId specified".
# https://docs.aws.amazon.com/sagemaker/latest/dg/api-permissions-reference.html
API_PERMISSIONS_DOC = "docs.aws.amazon.com/sagemaker/latest/dg/api-permissions-reference.html"
# What a job's execution role needs (S3 in and out, ECR pull, logs, metrics, the KMS key):
# https://docs.aws.amazon.com/sagemaker/latest/dg/sagemaker-roles.html
EXECUTION_ROLE_DOC = "docs.aws.amazon.com/sagemaker/latest/dg/sagemaker-roles.html"


@dataclass(frozen=True)
class Need:
    principals: tuple[str, ...]
    request: Request
    why: str = field(default="", compare=False)

    def __str__(self) -> str:
        context = f" {dict(self.request.context)}" if self.request.context else ""
        return (
            f"{' or '.join(self.principals)}: {self.request.action} on "
            f"{self.request.resource}{context} ({self.why})"
        )


class Arns:
    def __init__(self, region: str, account: str) -> None:
        self.region, self.account = region, account

    def sagemaker(self, kind: str, name: str) -> str:
        # SageMaker ARNs carry names in lower case.
        return f"arn:aws:sagemaker:{self.region}:{self.account}:{kind}/{name.lower()}"

    def log_stream(self, group: str, stream: str) -> str:
        return f"arn:aws:logs:{self.region}:{self.account}:log-group:{group}:log-stream:{stream}"

    def log_group(self, group: str) -> str:
        return f"arn:aws:logs:{self.region}:{self.account}:log-group:{group}"


def s3_object(uri: str) -> str:
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    return f"arn:aws:s3:::{bucket}/{key}"


def s3_bucket(uri: str) -> str:
    return f"arn:aws:s3:::{uri.removeprefix('s3://').partition('/')[0]}"


def s3_key(uri: str) -> str:
    return uri.removeprefix("s3://").partition("/")[2]


def _need(principals: str | Sequence[str], action: str, resource: str, why: str, **context):
    principals = (principals,) if isinstance(principals, str) else tuple(principals)
    return Need(principals, Request(action, resource, context), why)


# --- S3 as the container scripts call it ------------------------------------------------------


def s3_call_needs(call: Call, principal: str) -> list[Need]:
    p = call.params
    why = f"{call.operation} by {principal}'s code"
    if call.operation in ("GetObject", "HeadObject"):
        return [_need(principal, "s3:GetObject", f"arn:aws:s3:::{p['Bucket']}/{p['Key']}", why)]
    if call.operation in ("ListObjectsV2", "ListObjects"):
        return [
            _need(
                principal,
                "s3:ListBucket",
                f"arn:aws:s3:::{p['Bucket']}",
                why,
                **{"s3:prefix": p.get("Prefix", "")},
            )
        ]
    if call.operation in ("PutObject", "CreateMultipartUpload", "UploadPart"):
        return [_need(principal, "s3:PutObject", f"arn:aws:s3:::{p['Bucket']}/{p['Key']}", why)]
    raise NotImplementedError(f"no IAM mapping for s3 {call.operation} yet: add it here")


# --- the deployer's calls ---------------------------------------------------------------------


def deployer_call_needs(calls: Sequence[Call], arns: Arns, principal: str = "deployer"):
    """Needs of every recorded sagemaker / application-autoscaling call, implied ones included.
    `calls` in order: a CreateEndpoint's key is its config's, created by an earlier call."""
    needs: list[Need] = []
    configs: dict[str, dict] = {}
    endpoint_configs: dict[str, str] = {}
    for call in calls:
        p, op = call.params, call.operation
        why = f"{call.service} {op}"
        if call.service == "sagemaker":
            action = f"sagemaker:{op}"
            if op in ("DescribeModelPackage",):
                name = p["ModelPackageName"]
                resource = (
                    name if name.startswith("arn:") else arns.sagemaker("model-package", name)
                )
                needs.append(_need(principal, action, resource, why))
            elif op in (
                "ListModelPackages",
                "ListEndpoints",
                "ListModelPackageGroups",
                # The teardown lists what resource_name could have made.
                "ListEndpointConfigs",
                "ListModels",
            ):
                needs.append(_need(principal, action, "*", why))
            elif op in ("CreateModel", "DescribeModel", "DeleteModel"):
                needs.append(_need(principal, action, arns.sagemaker("model", p["ModelName"]), why))
                if op == "CreateModel":
                    needs.append(
                        _need(
                            principal,
                            "iam:PassRole",
                            p["ExecutionRoleArn"],
                            why,
                            **{"iam:PassedToService": SAGEMAKER_SERVICE},
                        )
                    )
            elif op in ("CreateEndpointConfig", "DescribeEndpointConfig", "DeleteEndpointConfig"):
                name = p["EndpointConfigName"]
                needs.append(_need(principal, action, arns.sagemaker("endpoint-config", name), why))
                if op == "CreateEndpointConfig":
                    configs[name] = p
            elif op in ("CreateEndpoint", "UpdateEndpoint"):
                endpoint, config = p["EndpointName"], p["EndpointConfigName"]
                endpoint_configs[endpoint] = config
                # The reference lists both the endpoint and its config as resources.
                needs.append(_need(principal, action, arns.sagemaker("endpoint", endpoint), why))
                needs.append(
                    _need(principal, action, arns.sagemaker("endpoint-config", config), why)
                )
                key = configs.get(config, {}).get("KmsKeyId")
                if key:
                    needs.append(
                        _need(
                            principal,
                            "kms:CreateGrant",
                            key,
                            f"{why} with a config KmsKeyId ({API_PERMISSIONS_DOC})",
                        )
                    )
            elif op in ("DescribeEndpoint", "DeleteEndpoint"):
                needs.append(
                    _need(principal, action, arns.sagemaker("endpoint", p["EndpointName"]), why)
                )
            elif op in ("AddTags", "ListTags", "DeleteTags"):
                needs.append(_need(principal, action, p["ResourceArn"], why))
            elif op == "UpdateModelPackage":
                needs.append(_need(principal, action, p["ModelPackageArn"], why))
            elif op in MONITORING_SCHEDULE_OPERATIONS:
                needs += _monitoring_schedule_needs(call, arns, principal)
            elif op in ("ListPipelineExecutions", "StartPipelineExecution"):
                needs.append(
                    _need(principal, action, arns.sagemaker("pipeline", p["PipelineName"]), why)
                )
            else:
                raise NotImplementedError(f"no IAM mapping for sagemaker {op} yet: add it here")
        elif call.service == "application-autoscaling":
            needs.append(_need(principal, f"application-autoscaling:{op}", "*", why))
            needs.extend(_autoscaling_implied(call, arns, endpoint_configs, principal))
        elif call.service == "sns" and op == "Publish":
            needs.append(_need(principal, "sns:Publish", p["TopicArn"], why))
        else:
            raise NotImplementedError(f"no IAM mapping for {call.service} yet: add it here")
    return needs


MONITORING_SCHEDULE_OPERATIONS = (
    "CreateMonitoringSchedule",
    "UpdateMonitoringSchedule",
    "DescribeMonitoringSchedule",
    "DeleteMonitoringSchedule",
)


def _monitoring_schedule_needs(call: Call, arns: Arns, principal: str) -> list[Need]:
    """The schedule's own action on its ARN; creating or updating one also passes the job's
    role (iam:PassRole), tags it (AddTags, with Tags) and needs a grant on a volume key (the
    caller or the role, as for processing jobs: API permissions reference)."""
    p, op = call.params, call.operation
    why = f"sagemaker {op}"
    schedule = arns.sagemaker("monitoring-schedule", p["MonitoringScheduleName"])
    needs = [_need(principal, f"sagemaker:{op}", schedule, why)]
    if op not in ("CreateMonitoringSchedule", "UpdateMonitoringSchedule"):
        return needs
    if p.get("Tags"):
        needs.append(_need(principal, "sagemaker:AddTags", schedule, f"{why} with Tags"))
    definition = p["MonitoringScheduleConfig"]["MonitoringJobDefinition"]
    needs.append(
        _need(
            principal,
            "iam:PassRole",
            definition["RoleArn"],
            why,
            **{"iam:PassedToService": SAGEMAKER_SERVICE},
        )
    )
    volume_key = definition["MonitoringResources"]["ClusterConfig"].get("VolumeKmsKeyId")
    if volume_key:
        needs.append(
            _need(
                (principal, "monitor"),
                "kms:CreateGrant",
                volume_key,
                f"{why} with a VolumeKmsKeyId ({API_PERMISSIONS_DOC})",
            )
        )
    return needs


def monitoring_role_needs(calls: Sequence[Call], arns: Arns) -> list[Need]:
    """What each scheduled monitoring job does as the schedule's RoleArn ("monitor"): Model
    Monitor lists and reads the window's captured data; the bootstrap reads the code archive
    and the window's ground truth; Model Monitor reads the baseline and uploads the reports
    (with the output key); the job pulls its image, logs and publishes its metrics."""
    needs: list[Need] = []
    captures: dict[str, str] = {}
    for call in calls:
        p = call.params
        if call.operation == "CreateEndpointConfig" and p.get("DataCaptureConfig"):
            for variant in p["ProductionVariants"]:
                captures[p["EndpointConfigName"]] = (
                    p["DataCaptureConfig"]["DestinationS3Uri"].rstrip("/")
                    + "/{endpoint}/"
                    + variant["VariantName"]
                )
        if call.operation not in ("CreateMonitoringSchedule", "UpdateMonitoringSchedule"):
            continue
        definition = p["MonitoringScheduleConfig"]["MonitoringJobDefinition"]
        name = p["MonitoringScheduleName"]
        why = f"monitoring job of schedule {name} ({EXECUTION_ROLE_DOC})"
        env = definition["Environment"]
        endpoint = definition["MonitoringInputs"][0]["EndpointInput"]["EndpointName"]
        reads = [
            env["BINCOUNT_CODE_URI"],
            definition["BaselineConfig"]["StatisticsResource"]["S3Uri"],
        ]
        listed = []
        for capture in {c.format(endpoint=endpoint) for c in captures.values()}:
            listed.append(f"{capture}/2025/01/02/03/")
            reads.append(f"{capture}/2025/01/02/03/12-34-56-789-abcd.jsonl")
        truth = env.get("BINCOUNT_GROUND_TRUTH_URI")
        if truth:
            listed.append(f"{truth.rstrip('/')}/2025/01/02/")
            reads.append(f"{truth.rstrip('/')}/2025/01/02/03/labels.jsonl")
        for uri in reads:
            needs.append(_need("monitor", "s3:GetObject", s3_object(uri), why))
        for uri in listed:
            needs.append(
                _need("monitor", "s3:ListBucket", s3_bucket(uri), why, **{"s3:prefix": s3_key(uri)})
            )
        output = definition["MonitoringOutputConfig"]
        for out in output["MonitoringOutputs"]:
            report = f"{out['S3Output']['S3Uri'].rstrip('/')}/{endpoint}/{name}/2025/01/02/03/"
            for file in ("statistics.json", "constraint_violations.json", "report.png"):
                needs.append(_need("monitor", "s3:PutObject", s3_object(report + file), why))
        if output.get("KmsKeyId"):
            key = output["KmsKeyId"]
            needs.append(_need("monitor", "kms:GenerateDataKey", key, f"{why}: encrypted reports"))
            needs.append(_need("monitor", "kms:Decrypt", key, f"{why}: encrypted capture"))
        needs += _image_pull("monitor", definition["MonitoringAppSpecification"]["ImageUri"], why)
        group = "/aws/sagemaker/ProcessingJobs"
        stream = "model-monitoring-202501020300-0a1b2c3d/algo-1-1700000000"
        needs += [
            _need("monitor", "logs:CreateLogGroup", arns.log_group(group), why),
            _need("monitor", "logs:CreateLogStream", arns.log_stream(group, stream), why),
            _need("monitor", "logs:PutLogEvents", arns.log_stream(group, stream), why),
            _need(
                "monitor",
                "cloudwatch:PutMetricData",
                "*",
                why,
                **{"cloudwatch:namespace": "aws/sagemaker/Endpoints/data-metrics"},
            ),
        ]
    return needs


def _autoscaling_implied(call: Call, arns: Arns, endpoint_configs: dict, principal: str):
    p = call.params
    resource_id = p.get("ResourceId", "")
    if p.get("ServiceNamespace") != "sagemaker" or not resource_id.startswith("endpoint/"):
        return []
    endpoint = resource_id.split("/")[1]
    why = f"application-autoscaling {call.operation} on a SageMaker variant ({AUTOSCALING_DOC})"
    needs = []
    if call.operation == "RegisterScalableTarget":
        needs += [
            _need(
                principal, "sagemaker:DescribeEndpoint", arns.sagemaker("endpoint", endpoint), why
            ),
            _need(
                principal,
                "sagemaker:UpdateEndpointWeightsAndCapacities",
                arns.sagemaker("endpoint", endpoint),
                why,
            ),
            # The first registration creates Application Auto Scaling's service-linked role.
            _need(
                principal,
                "iam:CreateServiceLinkedRole",
                f"arn:aws:iam::{arns.account}:role/aws-service-role/{AUTOSCALING_SERVICE}/"
                "AWSServiceRoleForApplicationAutoScaling_SageMakerEndpoint",
                why,
                **{"iam:AWSServiceName": AUTOSCALING_SERVICE},
            ),
        ]
        if endpoint in endpoint_configs:
            config = arns.sagemaker("endpoint-config", endpoint_configs[endpoint])
            needs.append(_need(principal, "sagemaker:DescribeEndpointConfig", config, why))
    if call.operation == "PutScalingPolicy":
        # Target tracking names its alarms TargetTracking-<resource id>-AlarmHigh-<uuid>.
        alarm = (
            f"arn:aws:cloudwatch:{arns.region}:{arns.account}:alarm:TargetTracking-"
            f"{resource_id}-AlarmHigh-0a1b2c3d-4e5f-6a7b-8c9d-0e1f2a3b4c5d"
        )
        for action in ("cloudwatch:PutMetricAlarm", "cloudwatch:DescribeAlarms"):
            needs.append(_need(principal, action, alarm, why))
        needs.append(_need(principal, "cloudwatch:DeleteAlarms", alarm, why))
    return needs


# --- what serving the deployed model needs ----------------------------------------------------


def model_role_needs(calls: Sequence[Call], arns: Arns) -> list[Need]:
    """The endpoint runs as the model's ExecutionRoleArn: it reads its model (and the key it
    is encrypted with), pulls its image, writes data capture, logs and metrics."""
    needs: list[Need] = []
    for call in calls:
        p = call.params
        if call.operation == "CreateModel":
            container = p.get("PrimaryContainer") or p["Containers"][0]
            why = f"serving model {p['ModelName']} ({EXECUTION_ROLE_DOC})"
            needs.append(_need("model", "s3:GetObject", s3_object(container["ModelDataUrl"]), why))
            needs += _image_pull("model", container["Image"], why)
        elif call.operation == "CreateEndpointConfig":
            capture = p.get("DataCaptureConfig")
            if capture and capture.get("EnableCapture", True):
                why = f"data capture of {p['EndpointConfigName']}"
                target = (
                    capture["DestinationS3Uri"].rstrip("/") + "/AllTraffic/2025/01/02/03/x.jsonl"
                )
                needs.append(_need("model", "s3:PutObject", s3_object(target), why))
                if capture.get("KmsKeyId"):
                    needs.append(_need("model", "kms:GenerateDataKey", capture["KmsKeyId"], why))
        elif call.operation == "CreateEndpoint":
            why = f"endpoint {p['EndpointName']} logs and metrics"
            group = f"/aws/sagemaker/Endpoints/{p['EndpointName']}"
            needs += _logs_and_metrics("model", arns, group, "AllTraffic/i-0abc", why)
    return needs


# --- what a pipeline execution needs -----------------------------------------------------------


def pipeline_needs(
    requests: Sequence[StepRequest],
    arns: Arns,
    deployer_function_arn: str,
    property_files: Mapping[str, Iterable[tuple[str, str]]],
) -> list[Need]:
    """The pipeline role starts every job (passing the job role), registers the version,
    reads property files and invokes the deployer; the job role runs each job: it reads the
    inputs and code, writes the outputs, pulls the image, logs and publishes metrics.

    `property_files`: step -> (output name, file path) pairs the pipeline reads."""
    needs: list[Need] = []
    for request in requests:
        p = request.params
        why = f"{request.step}: {request.operation}"
        if request.operation in ("CreateProcessingJob", "CreateTrainingJob"):
            kind = (
                "processing-job" if request.operation == "CreateProcessingJob" else "training-job"
            )
            name = p.get("ProcessingJobName") or p["TrainingJobName"]
            needs.append(
                _need("pipeline", f"sagemaker:{request.operation}", arns.sagemaker(kind, name), why)
            )
            describe = request.operation.replace("Create", "Describe")
            needs.append(
                _need("pipeline", f"sagemaker:{describe}", arns.sagemaker(kind, name), why)
            )
            needs.append(
                _need(
                    "pipeline",
                    "iam:PassRole",
                    p["RoleArn"],
                    why,
                    **{"iam:PassedToService": SAGEMAKER_SERVICE},
                )
            )
            resources = p.get("ResourceConfig") or p["ProcessingResources"]["ClusterConfig"]
            if resources.get("VolumeKmsKeyId"):
                needs.append(
                    _need(
                        ("pipeline", "job"),
                        "kms:CreateGrant",
                        resources["VolumeKmsKeyId"],
                        f"{why} with a VolumeKmsKeyId ({API_PERMISSIONS_DOC})",
                    )
                )
            needs += _job_role_needs(request, arns)
        elif request.operation == "CreateModelPackage":
            group = p["ModelPackageGroupName"]
            needs.append(
                _need(
                    "pipeline",
                    "sagemaker:CreateModelPackage",
                    arns.sagemaker("model-package", f"{group}/1"),
                    why,
                )
            )
    for step, files in property_files.items():
        (request,) = [r for r in requests if r.step == step]
        outputs = {o["OutputName"]: o for o in request.params["ProcessingOutputConfig"]["Outputs"]}
        for output, path in files:
            uri = outputs[output]["S3Output"]["S3Uri"].rstrip("/") + "/" + path
            why = f"the pipeline reads {step}'s property file {path}"
            needs.append(_need("pipeline", "s3:GetObject", s3_object(uri), why))
            key = request.params["ProcessingOutputConfig"].get("KmsKeyId")
            if key:
                needs.append(_need("pipeline", "kms:Decrypt", key, why))
    needs.append(_need("pipeline", "lambda:InvokeFunction", deployer_function_arn, "Deploy step"))
    return needs


def _job_role_needs(request: StepRequest, arns: Arns) -> list[Need]:
    p = request.params
    why = f"{request.step} runs as the job role ({EXECUTION_ROLE_DOC})"
    needs: list[Need] = []
    reads: list[str] = []
    writes: list[str] = []
    output_key = None
    if request.operation == "CreateProcessingJob":
        name = p["ProcessingJobName"]
        reads = [i["S3Input"]["S3Uri"] for i in p.get("ProcessingInputs", []) if "S3Input" in i]
        config = p.get("ProcessingOutputConfig", {})
        writes = [o["S3Output"]["S3Uri"] for o in config.get("Outputs", [])]
        output_key = config.get("KmsKeyId")
        image = p["AppSpecification"]["ImageUri"]
        group = "/aws/sagemaker/ProcessingJobs"
    else:
        name = p["TrainingJobName"]
        reads = [c["DataSource"]["S3DataSource"]["S3Uri"] for c in p.get("InputDataConfig", [])]
        # The training toolkit downloads the code itself, with the job's credentials.
        code = p.get("HyperParameters", {}).get("sagemaker_submit_directory", "")
        if code.startswith("s3://"):
            reads.append(code)
        out = p["OutputDataConfig"]
        writes = [f"{out['S3OutputPath'].rstrip('/')}/{name}/output/model.tar.gz"]
        output_key = out.get("KmsKeyId")
        if p.get("CheckpointConfig"):
            checkpoints = p["CheckpointConfig"]["S3Uri"]
            reads.append(checkpoints)
            writes.append(checkpoints)
        image = p["AlgorithmSpecification"]["TrainingImage"]
        group = "/aws/sagemaker/TrainingJobs"
    for uri in reads:
        needs.append(_need("job", "s3:GetObject", s3_object(_an_object(uri)), why))
        needs.append(
            _need("job", "s3:ListBucket", s3_bucket(uri), why, **{"s3:prefix": s3_key(uri)})
        )
    for uri in writes:
        needs.append(_need("job", "s3:PutObject", s3_object(_an_object(uri)), why))
    if output_key:
        needs.append(_need("job", "kms:GenerateDataKey", output_key, f"{why}: encrypted outputs"))
        # What the job reads back was written with the same key by the steps before it.
        needs.append(_need("job", "kms:Decrypt", output_key, f"{why}: encrypted inputs"))
    needs += _image_pull("job", image, why)
    needs += _logs_and_metrics("job", arns, group, f"{name}/algo-1-1700000000", why)
    return needs


def _an_object(uri: str) -> str:
    """An object a prefix URI stands for (a URI naming a file stands for itself)."""
    last = uri.rstrip("/").rsplit("/", 1)[-1]
    if "." in last and not uri.endswith("/"):
        return uri
    return uri.rstrip("/") + "/algo-1-00000.images.npy"


def _image_pull(principal: str, image: str, why: str) -> list[Need]:
    registry, _, rest = image.partition("/")
    account, _, _, region, *_ = registry.split(".")
    repository = rest.split(":")[0].split("@")[0]
    arn = f"arn:aws:ecr:{region}:{account}:repository/{repository}"
    return [
        _need(principal, "ecr:GetAuthorizationToken", "*", why),
        _need(principal, "ecr:BatchCheckLayerAvailability", arn, why),
        _need(principal, "ecr:GetDownloadUrlForLayer", arn, why),
        _need(principal, "ecr:BatchGetImage", arn, why),
    ]


def _logs_and_metrics(principal: str, arns: Arns, group: str, stream: str, why: str):
    return [
        _need(principal, "logs:CreateLogGroup", arns.log_group(group), why),
        _need(principal, "logs:CreateLogStream", arns.log_stream(group, stream), why),
        _need(principal, "logs:PutLogEvents", arns.log_stream(group, stream), why),
        _need(
            principal,
            "cloudwatch:PutMetricData",
            "*",
            why,
            **{"cloudwatch:namespace": group},
        ),
    ]
