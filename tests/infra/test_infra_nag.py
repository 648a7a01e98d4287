"""cdk-nag's AWS Solutions checks run in every synth: zero findings left, each one acknowledged
with its reason."""

from __future__ import annotations

import json


def test_synth_passed_every_validation_plugin(cloud_assembly):
    report = json.loads((cloud_assembly / "validation-report.json").read_text())
    assert report["pluginReports"] == [], json.dumps(report["pluginReports"], indent=1)[:4000]


def test_no_warning_or_error_annotation_left(cloud_assembly):
    metadata = json.loads((cloud_assembly / "Bincount-dev.metadata.json").read_text())
    left = [
        (path, entry["data"])
        for path, entries in metadata.items()
        for entry in entries
        if entry["type"] in {"aws:cdk:warning", "aws:cdk:error"}
    ]
    assert left == []


def test_every_acknowledgement_says_why(cloud_assembly):
    metadata = json.loads((cloud_assembly / "Bincount-dev.metadata.json").read_text())
    acknowledged = {
        rule: reason
        for entries in metadata.values()
        for entry in entries
        if entry["type"] == "aws:cdk:acknowledged-rules"
        for rule, reason in entry["data"].items()
    }
    assert any("AwsSolutions-IAM5" in rule for rule in acknowledged)
    for rule, reason in acknowledged.items():
        assert len(reason.split()) >= 6, f"{rule}: reason too thin: {reason!r}"


def test_an_unacknowledged_finding_fails_synth(tmp_path):
    """The checks are wired to fail: the stack's storage passes, a bare bucket beside it not."""
    import pytest
    from aws_cdk import App, Stack, Validations
    from aws_cdk import aws_s3 as s3
    from cdk_nag import AwsSolutionsChecks

    from app import cdk_json_context
    from infra.config import StackConfig
    from infra.storage import Storage

    def synth(with_bare_bucket: bool) -> None:
        # cdk.json's feature flags too: access logs go through a bucket policy, not an ACL.
        app = App(outdir=str(tmp_path / str(with_bare_bucket)), context=cdk_json_context())
        stack = Stack(app, "NagProbe")
        Storage(stack, "Storage", StackConfig())
        if with_bare_bucket:
            s3.Bucket(stack, "Bare")
        Validations.of(app).add_plugins(AwsSolutionsChecks(app))
        app.synth()

    synth(with_bare_bucket=False)
    with pytest.raises(RuntimeError, match=r"ValidationFailed(.|\n)*NagProbe/Bare"):
        synth(with_bare_bucket=True)
