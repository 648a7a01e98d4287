"""Log groups of the stack's own functions: encrypted with the stack's key, kept as long as the
environment says, and removed with the stack where its `removal` is `destroy`."""

from __future__ import annotations

from aws_cdk import RemovalPolicy
from aws_cdk import aws_kms as kms
from aws_cdk import aws_logs as logs
from constructs import Construct

from infra.config import StackConfig

_RETENTION = {
    1: logs.RetentionDays.ONE_DAY,
    7: logs.RetentionDays.ONE_WEEK,
    14: logs.RetentionDays.TWO_WEEKS,
    30: logs.RetentionDays.ONE_MONTH,
    90: logs.RetentionDays.THREE_MONTHS,
    180: logs.RetentionDays.SIX_MONTHS,
    365: logs.RetentionDays.ONE_YEAR,
    731: logs.RetentionDays.TWO_YEARS,
}


def log_group(scope: Construct, construct_id: str, config: StackConfig, key: kms.IKey):
    days = config.log_retention_days
    if days not in _RETENTION:
        raise ValueError(f"log_retention_days must be one of {sorted(_RETENTION)}, got {days}")
    return logs.LogGroup(
        scope,
        construct_id,
        encryption_key=key,
        retention=_RETENTION[days],
        removal_policy=RemovalPolicy.RETAIN
        if config.removal == "retain"
        else RemovalPolicy.DESTROY,
    )
