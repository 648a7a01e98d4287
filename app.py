"""The CDK app: `make synth` / `cdk deploy` (cdk.json runs this file), or `python app.py`.

Run bare, it reads cdk.json's context itself, so both paths synthesize the same stack.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from aws_cdk import App, Environment, Validations
from cdk_nag import AwsSolutionsChecks

from infra.config import StackConfig
from infra.stack import BincountStack

CDK_JSON = Path(__file__).resolve().parent / "cdk.json"


def cdk_json_context() -> dict:
    return json.loads(CDK_JSON.read_text())["context"]


def build_app(outdir: str | None = None, context: dict | None = None) -> tuple[App, BincountStack]:
    """The app with its one stack and the AWS Solutions checks (synth fails on a finding)."""
    # The CDK CLI hands cdk.json's context in through CDK_CONTEXT_JSON; bare runs read it here.
    if context is None and "CDK_CONTEXT_JSON" not in os.environ:
        context = cdk_json_context()
    app = App(outdir=outdir, context=context)
    config = StackConfig.from_context(
        {k: app.node.try_get_context(k) for k in ("bincount:environments", "bincount:environment")}
    )
    stack = BincountStack(
        app,
        config.stack_name,
        config=config,
        env=Environment(
            account=config.account or os.environ.get("CDK_DEFAULT_ACCOUNT"),
            region=config.region or os.environ.get("CDK_DEFAULT_REGION") or "us-east-1",
        ),
        description="bincount: SageMaker pipeline, model registry and endpoint deployer",
    )
    Validations.of(app).add_plugins(AwsSolutionsChecks(app))
    return app, stack


if __name__ == "__main__":
    # The CLI names the output folder; a bare run writes where the CLI would.
    build_app(outdir=os.environ.get("CDK_OUTDIR") or str(CDK_JSON.parent / "cdk.out"))[0].synth()
