"""cdk.json sets every feature flag aws-cdk-lib recommends for a new app, deliberately.

The recommended set ships inside the installed aws-cdk-lib (its jsii assembly carries
`recommended-feature-flags.json`, what `cdk init` writes into a new app's cdk.json). A flag
left unset makes `cdk synth` print "N feature flags are not configured", and an upgrade of
aws-cdk-lib that adds flags fails here until each one is chosen. A flag set against the
recommendation is listed in DEVIATIONS with the reason.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import tarfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

DEVIATIONS = {
    # Partition literals turn `arn:${AWS::Partition}:...` into `arn:aws:...` in the template,
    # and the stack's cdk-nag acknowledgments name findings by the token form
    # (`Resource::arn:<AWS::Partition>:...`, infra/). Off, the templates stay as they were.
    "@aws-cdk/core:enablePartitionLiterals": False,
}


def recommended_flags() -> dict:
    """The flags of the installed aws-cdk-lib, read off its assembly without importing it."""
    version = importlib.metadata.version("aws-cdk-lib")
    package = Path(importlib.util.find_spec("aws_cdk").submodule_search_locations[0])
    with tarfile.open(package / "_jsii" / f"aws-cdk-lib@{version}.jsii.tgz") as assembly:
        member = assembly.extractfile("package/recommended-feature-flags.json")
        return json.load(member)


def context() -> dict:
    return json.loads((REPO / "cdk.json").read_text())["context"]


def test_every_recommended_flag_is_set():
    recommended = recommended_flags()
    assert len(recommended) > 50  # the file was found and read, not an empty stand-in
    ctx = context()
    missing = sorted(set(recommended) - set(ctx))
    assert not missing, f"feature flags not set in cdk.json's context: {missing}"
    differ = {
        flag: (ctx[flag], value)
        for flag, value in recommended.items()
        if ctx[flag] != value and flag not in DEVIATIONS
    }
    assert not differ, f"against the recommendation, no reason (set, recommended): {differ}"


def test_each_deviation_is_real_and_set():
    recommended = recommended_flags()
    ctx = context()
    for flag, value in DEVIATIONS.items():
        assert flag in recommended, f"{flag} is no longer a recommended flag: drop it here"
        assert recommended[flag] != value, f"{flag}: the recommendation is now {value}"
        assert ctx[flag] == value, f"cdk.json sets {flag} to {ctx[flag]!r}, not {value!r}"
