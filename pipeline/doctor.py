"""`python -m pipeline doctor [--aws]`: preflight checks before `make deploy` and a first run.

Offline it resolves the environment from cdk.json and says what the AWS checks will ask for.
With `--aws` it checks, with read-only calls, what otherwise surfaces only after a deployment
or half an hour of pipeline retries: credentials, the region, the CDK bootstrap stack and its
version, and the SageMaker Service Quotas for the instance types the environment runs on.

Each check gives one PASS/WARN/FAIL line and, when something is wrong, exactly what to do.
Exit code 0 when nothing failed (warnings allowed), 1 when a check failed, 2 for a usage error.
Checks take boto3 clients (`AwsClients`), so tests hand in stubbed ones.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any

from infra.config import StackConfig
from pipeline.cli_support import CliError, cdk_context, load_config
from pipeline.settings import ParameterDefaults, Settings

PASS, WARN, FAIL = "PASS", "WARN", "FAIL"

# The bootstrap stack `cdk bootstrap` creates, and where it records its version.
TOOLKIT_STACK = "CDKToolkit"
QUALIFIER_KEY = "@aws-cdk/core:bootstrapQualifier"
DEFAULT_QUALIFIER = "hnb659fds"
# The bootstrap version the pinned aws-cdk-lib (2.275.0) requires for deploying, as its
# DefaultStackSynthesizer writes into every template's CheckBootstrapVersion rule. The
# constant is private to the CDK's JavaScript, so it is written down here;
# tests/pipeline/test_doctor.py synthesizes a stack and fails when the two disagree.
MIN_BOOTSTRAP_VERSION = 6
# Stack states in which `cdk deploy` can use the bootstrap resources.
USABLE_TOOLKIT_STATES = {"CREATE_COMPLETE", "UPDATE_COMPLETE", "IMPORT_COMPLETE"}
# Usable, but its last update failed and rolled back: it may be older than expected.
ROLLED_BACK_TOOLKIT_STATES = {"UPDATE_ROLLBACK_COMPLETE"}

# SageMaker's instance quotas are named "<instance type> for <use> usage". Found: SageMaker's
# ResourceLimitExceeded message quotes the name ("The account-level service limit
# 'ml.g4dn.xlarge for endpoint usage' is 0 Instances ..."), and `list-service-quotas
# --service-code sagemaker` output lists "... for training job usage", "... for spot training
# job usage" and "... for processing job usage". AWS's docs publish no table of these names,
# and they have been renamed before, so a name that is not listed is a warning, not a pass.
QUOTA_SERVICE = "sagemaker"
TRAINING_USE = "training job usage"
SPOT_TRAINING_USE = "spot training job usage"
PROCESSING_USE = "processing job usage"
ENDPOINT_USE = "endpoint usage"

LOGIN = "run `aws configure` or `aws sso login`, or set AWS_PROFILE"
EXPIRED_CODES = {"ExpiredToken", "ExpiredTokenException", "RequestExpired"}
INVALID_CODES = {"InvalidClientTokenId", "SignatureDoesNotMatch", "UnrecognizedClientException"}


@dataclass(frozen=True)
class Result:
    check: str
    status: str
    detail: str
    remedy: str = ""


@dataclass(frozen=True)
class QuotaNeed:
    """At least `need` of the quota `name` (an instance type and a use), for `reason`."""

    instance_type: str
    use: str
    need: int
    reason: str

    @property
    def name(self) -> str:
        return f"{self.instance_type} for {self.use}"


@dataclass(frozen=True)
class AwsClients:
    sts: Any
    cloudformation: Any
    ssm: Any
    service_quotas: Any

    @classmethod
    def from_session(cls, session, region: str) -> AwsClients:
        def client(name: str):
            return session.client(name, region_name=region)

        return cls(
            sts=client("sts"),
            cloudformation=client("cloudformation"),
            ssm=client("ssm"),
            service_quotas=client("service-quotas"),
        )


# --- what the environment needs ---------------------------------------------------------------


def stack_pipeline_settings(config: StackConfig) -> Settings:
    """The parts of infra.pipeline.pipeline_settings that decide instance usage, without
    importing the CDK (a test keeps the two in step)."""
    return Settings(
        spot=config.spot_training,
        defaults=ParameterDefaults(
            training_instance_type=config.training_instance_type,
        ),
    )


def quota_needs(config: StackConfig, settings: Settings) -> list[QuotaNeed]:
    """Instances the pipeline's defaults and the endpoint use at once, per quota."""
    defaults = settings.defaults
    training_use = SPOT_TRAINING_USE if settings.spot else TRAINING_USE
    # A blue/green update provisions the new fleet beside the old one at its full size; stages
    # on the same instance type share its quota. Serverless stages use no instance quota.
    endpoint_needs: dict[str, list[str]] = {}
    endpoint_counts: dict[str, int] = {}
    for stage in config.stages:
        if stage.serverless:
            continue
        peak = max(stage.instance_count, stage.autoscaling_max)
        endpoint_counts[stage.instance_type] = (
            endpoint_counts.get(stage.instance_type, 0) + 2 * peak
        )
        endpoint_needs.setdefault(stage.instance_type, []).append(
            f"{stage.name}: 2 x {peak} instances during a blue/green update"
        )
    return [
        QuotaNeed(
            defaults.training_instance_type,
            training_use,
            defaults.training_instance_count,
            f"Train: TrainingInstanceCount {defaults.training_instance_count}",
        ),
        # Prepare and Evaluate run one after the other, so they never add up.
        QuotaNeed(
            defaults.processing_instance_type,
            PROCESSING_USE,
            defaults.processing_instance_count,
            f"Prepare/Evaluate: ProcessingInstanceCount {defaults.processing_instance_count}",
        ),
        *(
            QuotaNeed(instance_type, ENDPOINT_USE, count, "; ".join(endpoint_needs[instance_type]))
            for instance_type, count in endpoint_counts.items()
        ),
    ]


# --- checks -------------------------------------------------------------------------------------


def check_config(env_name: str, config: StackConfig, needs: list[QuotaNeed]) -> Result:
    wanted = ", ".join(f"{n.name} >= {n.need}" for n in needs)
    region = config.region or "(not set in cdk.json)"
    return Result(
        "config",
        PASS,
        f"environment {env_name!r}: stack {config.stack_name} in {region}; quotas needed: {wanted}",
    )


def resolve_region(
    cli_region: str | None, config: StackConfig, configured: str | None
) -> tuple[str, Result]:
    """The region to check: where `make deploy` puts the stack. app.py takes cdk.json's region
    first, then the AWS config's (CDK_DEFAULT_REGION), then us-east-1, so doctor does too."""
    if cli_region:
        region, source = cli_region, "--region"
    elif config.region:
        region, source = config.region, f"cdk.json environment {config.name!r}"
    elif configured:
        region, source = configured, "your AWS config (AWS_DEFAULT_REGION or the profile)"
    else:
        region, source = "us-east-1", "app.py's default (no region in cdk.json or AWS config)"
    detail = f"{region} (from {source})"
    if config.region and region != config.region:
        return region, Result(
            "region",
            WARN,
            f"{detail}, but the {config.name} stack deploys to {config.region} (cdk.json)",
            f"check {config.region} instead: drop --region, or change cdk.json",
        )
    if configured and region != configured:
        return region, Result(
            "region",
            WARN,
            f"{detail}; your AWS config defaults to {configured}",
            f"pass --region {region} (or --env) to `python -m pipeline start|status`, or "
            f"export AWS_DEFAULT_REGION={region}",
        )
    return region, Result("region", PASS, detail)


def check_credentials(sts, config: StackConfig) -> Result:
    from botocore.exceptions import (
        BotoCoreError,
        ClientError,
        NoCredentialsError,
        SSOTokenLoadError,
        TokenRetrievalError,
        UnauthorizedSSOTokenError,
    )

    try:
        identity = sts.get_caller_identity()
    except NoCredentialsError:
        return Result("credentials", FAIL, "no AWS credentials found", LOGIN)
    except (TokenRetrievalError, SSOTokenLoadError, UnauthorizedSSOTokenError) as error:
        return Result("credentials", FAIL, f"credentials expired: {error}", "run `aws sso login`")
    except ClientError as error:
        code = error.response.get("Error", {}).get("Code", "")
        message = error.response.get("Error", {}).get("Message", str(error))
        if code in EXPIRED_CODES:
            return Result("credentials", FAIL, f"credentials expired ({code}): {message}", LOGIN)
        if code in INVALID_CODES:
            return Result("credentials", FAIL, f"credentials rejected ({code}): {message}", LOGIN)
        return Result("credentials", FAIL, f"{code}: {message}", LOGIN)
    except BotoCoreError as error:  # ProfileNotFound, a broken config file, ...
        return Result("credentials", FAIL, str(error), LOGIN)
    detail = f"account {identity['Account']} as {identity['Arn']}"
    if config.account and config.account != identity["Account"]:
        return Result(
            "credentials",
            FAIL,
            f"{detail}, but cdk.json pins {config.name} to account {config.account}",
            f"use credentials for account {config.account}",
        )
    return Result("credentials", PASS, detail)


def check_bootstrap(
    cloudformation, ssm, region: str, env_name: str, qualifier: str = DEFAULT_QUALIFIER
) -> Result:
    from botocore.exceptions import ClientError

    bootstrap = f"make bootstrap ENV={env_name}"
    try:
        stacks = cloudformation.describe_stacks(StackName=TOOLKIT_STACK)["Stacks"]
    except ClientError as error:
        details = error.response.get("Error", {})
        # CloudFormation answers a stack that does not exist with a ValidationError.
        if details.get("Code") == "ValidationError" and "does not exist" in details.get(
            "Message", ""
        ):
            return Result(
                "cdk bootstrap",
                FAIL,
                f"no {TOOLKIT_STACK} stack in {region}: the account is not bootstrapped there",
                bootstrap,
            )
        return _could_not_check("cdk bootstrap", error)
    status = stacks[0]["StackStatus"]
    if status.endswith("_IN_PROGRESS"):
        return Result(
            "cdk bootstrap",
            FAIL,
            f"{TOOLKIT_STACK} is {status}",
            "wait for it to finish, then run doctor again",
        )
    if status not in USABLE_TOOLKIT_STATES | ROLLED_BACK_TOOLKIT_STATES:
        return Result(
            "cdk bootstrap",
            FAIL,
            f"{TOOLKIT_STACK} is {status} and cannot be used",
            f"aws cloudformation delete-stack --stack-name {TOOLKIT_STACK} --region {region}; "
            f"then {bootstrap}",
        )

    parameter = f"/cdk-bootstrap/{qualifier}/version"
    try:
        value = ssm.get_parameter(Name=parameter)["Parameter"]["Value"]
    except ClientError as error:
        if error.response.get("Error", {}).get("Code") == "ParameterNotFound":
            return Result(
                "cdk bootstrap",
                FAIL,
                f"{TOOLKIT_STACK} is {status} but SSM parameter {parameter} does not exist "
                f"(bootstrapped with another qualifier, or with the legacy template?)",
                bootstrap,
            )
        return _could_not_check("cdk bootstrap", error)
    try:
        version = int(value)
    except ValueError:
        return Result(
            "cdk bootstrap", FAIL, f"{parameter} holds {value!r}, not a version", bootstrap
        )
    if version < MIN_BOOTSTRAP_VERSION:
        return Result(
            "cdk bootstrap",
            FAIL,
            f"bootstrap version {version} in {region}; aws-cdk-lib needs "
            f">= {MIN_BOOTSTRAP_VERSION}",
            bootstrap,
        )
    detail = f"{TOOLKIT_STACK} {status}, version {version} (>= {MIN_BOOTSTRAP_VERSION})"
    if status in ROLLED_BACK_TOOLKIT_STATES:
        return Result(
            "cdk bootstrap", WARN, f"{detail}; its last update failed and rolled back", bootstrap
        )
    return Result("cdk bootstrap", PASS, detail)


def read_quotas(client, names: Iterable[str], service_code: str = QUOTA_SERVICE) -> dict:
    """{quota name: quota}: the account's applied values, and AWS's defaults for the `names`
    the account has no applied value for (fetched only when one is missing)."""
    quotas = _all_quotas(client, "list_service_quotas", service_code)
    if not set(names) <= set(quotas):
        defaults = _all_quotas(client, "list_aws_default_service_quotas", service_code)
        quotas = {**defaults, **quotas}
    return quotas


def _all_quotas(client, operation: str, service_code: str) -> dict[str, dict]:
    return {
        quota["QuotaName"]: quota
        for page in client.get_paginator(operation).paginate(ServiceCode=service_code)
        for quota in page["Quotas"]
    }


def check_quotas(client, needs: Iterable[QuotaNeed], region: str) -> list[Result]:
    from botocore.exceptions import ClientError

    needs = list(needs)
    try:
        quotas = read_quotas(client, [need.name for need in needs])
    except ClientError as error:
        return [_could_not_check(f"quota: {need.name}", error) for need in needs]
    return [_check_quota(quotas.get(need.name), need, region) for need in needs]


def _check_quota(quota: dict | None, need: QuotaNeed, region: str) -> Result:
    check = f"quota: {need.name}"
    if quota is None:
        return Result(
            check,
            WARN,
            f"no SageMaker quota of that name in {region} (renamed by AWS, or the instance "
            f"type is not offered there); need {need.need} for {need.reason}",
            f"look it up: aws service-quotas list-service-quotas --service-code {QUOTA_SERVICE} "
            f"--region {region}",
        )
    value = quota.get("Value", 0.0)
    detail = f"{value:g} (need {need.need}: {need.reason})"
    if value >= need.need:
        return Result(check, PASS, detail)
    if not quota.get("Adjustable", True):
        return Result(
            check,
            FAIL,
            f"{detail}; this quota cannot be raised",
            "choose another instance type in cdk.json",
        )
    return Result(
        check,
        FAIL,
        detail,
        f"request '{need.name}' >= {need.need} in {region}: aws service-quotas "
        f"request-service-quota-increase --service-code {QUOTA_SERVICE} "
        f"--quota-code {quota['QuotaCode']} --desired-value {need.need} --region {region}",
    )


def _could_not_check(check: str, error) -> Result:
    details = error.response.get("Error", {})
    return Result(
        check,
        WARN,
        f"could not check ({details.get('Code', 'error')}: {details.get('Message', error)})",
        "grant the read permissions listed in `python -m pipeline doctor --help`",
    )


def aws_checks(
    clients: AwsClients,
    config: StackConfig,
    region: str,
    needs: list[QuotaNeed],
    qualifier: str = DEFAULT_QUALIFIER,
) -> list[Result]:
    """Credentials first: without them every other call fails the same way, so stop there."""
    credentials = check_credentials(clients.sts, config)
    if credentials.status == FAIL:
        return [credentials]
    return [
        credentials,
        check_bootstrap(clients.cloudformation, clients.ssm, region, config.name, qualifier),
        *check_quotas(clients.service_quotas, needs, region),
    ]


# --- command ------------------------------------------------------------------------------------

IAM_ACTIONS = (
    "sts:GetCallerIdentity",
    "cloudformation:DescribeStacks",
    "ssm:GetParameter",
    "servicequotas:ListServiceQuotas",
    "servicequotas:ListAWSDefaultServiceQuotas",
)


def add_command(commands) -> None:
    doctor = commands.add_parser(
        "doctor",
        help="preflight checks before deploying (credentials, bootstrap, quotas)",
        description=__doc__.split("\n\n")[0]
        + f" Read-only; IAM actions used: {', '.join(IAM_ACTIONS)}.",
    )
    doctor.add_argument(
        "--aws", action="store_true", help="check the AWS account (read-only calls)"
    )
    doctor.add_argument("--env", help="environment in cdk.json (default: bincount:environment)")
    doctor.add_argument("--region", help="default: the environment's region in cdk.json")
    doctor.add_argument("--json", action="store_true", help="print the results as JSON")
    doctor.set_defaults(func=cmd_doctor)


def cmd_doctor(args: argparse.Namespace) -> int:

    context = cdk_context()
    try:
        config = load_config(context, args.env)
    except ValueError as error:
        raise CliError(str(error)) from error
    needs = quota_needs(config, stack_pipeline_settings(config))
    results = [check_config(config.name, config, needs)]
    if args.aws:
        results.extend(_aws_results(args, context, config, needs))
    print_results(results, as_json=args.json)
    return exit_code(results)


def _aws_results(args, context: dict, config: StackConfig, needs: list[QuotaNeed]):
    import boto3
    from botocore.exceptions import BotoCoreError

    try:
        session = boto3.session.Session()
        configured_region = session.region_name
    except BotoCoreError as error:  # ProfileNotFound: AWS_PROFILE names no profile
        return [Result("credentials", FAIL, str(error), LOGIN)]
    region, region_result = resolve_region(args.region, config, configured_region)
    clients = AwsClients.from_session(session, region)
    qualifier = context.get(QUALIFIER_KEY) or DEFAULT_QUALIFIER
    return [region_result, *aws_checks(clients, config, region, needs, qualifier)]


def exit_code(results: Iterable[Result]) -> int:
    return 1 if any(r.status == FAIL for r in results) else 0


def print_results(results: list[Result], *, as_json: bool, out=None) -> None:
    out = out or sys.stdout
    if as_json:
        document = {"ok": exit_code(results) == 0, "results": [asdict(r) for r in results]}
        out.write(json.dumps(document, indent=2) + "\n")
        return
    for result in results:
        out.write(f"{result.status}  {result.check}: {result.detail}\n")
        if result.remedy and result.status != PASS:
            out.write(f"      -> {result.remedy}\n")
