"""The dev stack, synthesized once for the session (tests/conftest.py), as the CDK assertions
library and as {type: [(logical id, properties)]}."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def template(template_json: dict):
    from aws_cdk.assertions import Template

    return Template.from_json(template_json)


@pytest.fixture(scope="session")
def resources(template_json: dict):
    """{type: [(logical id, properties)]}"""
    by_type: dict[str, list[tuple[str, dict]]] = {}
    for logical_id, resource in template_json["Resources"].items():
        by_type.setdefault(resource["Type"], []).append(
            (logical_id, resource.get("Properties", {}))
        )
    return by_type
