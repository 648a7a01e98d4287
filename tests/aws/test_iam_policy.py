"""The IAM evaluator itself."""

from __future__ import annotations

import pytest
from iam_policy import ALLOW, DENY, IMPLICIT_DENY, Request, UnsupportedCondition, decide

BUCKET = "arn:aws:s3:::bincount-dev-databucket-1a2b3c"
ROLE = "arn:aws:iam::123456789012:role/bincount-dev-jobs"

STATEMENTS = [
    {"Effect": "Allow", "Action": "s3:GetObject", "Resource": f"{BUCKET}/bincount/*"},
    {
        "Effect": "Allow",
        "Action": ["s3:ListBucket"],
        "Resource": BUCKET,
        "Condition": {"StringLike": {"s3:prefix": ["bincount", "bincount/*"]}},
    },
    {
        "Effect": "Allow",
        "Action": "iam:PassRole",
        "Resource": ROLE,
        "Condition": {"StringEquals": {"iam:PassedToService": "sagemaker.amazonaws.com"}},
    },
    {"Effect": "Allow", "Action": "sagemaker:Describe*", "Resource": "*"},
    {"Effect": "Allow", "NotAction": ["iam:*", "s3:*", "sagemaker:*"], "Resource": "*"},
    {"Effect": "Deny", "Action": "s3:GetObject", "Resource": f"{BUCKET}/bincount/secret/*"},
]


@pytest.mark.parametrize(
    ("request_", "expected"),
    [
        (Request("s3:GetObject", f"{BUCKET}/bincount/code/x.tar.gz"), ALLOW),
        (Request("S3:getobject", f"{BUCKET}/bincount/code/x.tar.gz"), ALLOW),
        (Request("s3:GetObject", f"{BUCKET}/other/x"), IMPLICIT_DENY),
        (Request("s3:PutObject", f"{BUCKET}/bincount/x"), IMPLICIT_DENY),
        (Request("s3:GetObject", f"{BUCKET}/bincount/secret/x"), DENY),
        (Request("s3:ListBucket", BUCKET, {"s3:prefix": "bincount/executions/"}), ALLOW),
        (Request("s3:ListBucket", BUCKET, {"s3:prefix": "elsewhere/"}), IMPLICIT_DENY),
        (Request("s3:ListBucket", BUCKET), IMPLICIT_DENY),
        (Request("iam:PassRole", ROLE, {"iam:PassedToService": "sagemaker.amazonaws.com"}), ALLOW),
        (
            Request("iam:PassRole", ROLE, {"iam:PassedToService": "ec2.amazonaws.com"}),
            IMPLICIT_DENY,
        ),
        (Request("iam:PassRole", ROLE + "-admin", {}), IMPLICIT_DENY),
        (Request("sagemaker:DescribeEndpoint", "arn:aws:sagemaker:us-east-1:1:endpoint/x"), ALLOW),
        (
            Request("sagemaker:UpdateEndpoint", "arn:aws:sagemaker:us-east-1:1:endpoint/x"),
            IMPLICIT_DENY,
        ),
        (Request("kms:Decrypt", "arn:aws:kms:us-east-1:1:key/k"), ALLOW),
        (Request("iam:CreateRole", "*"), IMPLICIT_DENY),
    ],
)
def test_decisions(request_, expected):
    assert decide(STATEMENTS, request_) == expected


def test_resources_are_case_sensitive_and_question_mark_is_one_character():
    statements = [{"Effect": "Allow", "Action": "s3:GetObject", "Resource": f"{BUCKET}/a?c"}]
    assert decide(statements, Request("s3:GetObject", f"{BUCKET}/abc")) == ALLOW
    assert decide(statements, Request("s3:GetObject", f"{BUCKET}/ABC")) == IMPLICIT_DENY
    assert decide(statements, Request("s3:GetObject", f"{BUCKET}/abbc")) == IMPLICIT_DENY


def test_negated_and_if_exists_conditions_on_a_missing_key():
    statements = [
        {
            "Effect": "Allow",
            "Action": "cloudwatch:PutMetricData",
            "Resource": "*",
            "Condition": {
                "StringNotEquals": {"aws:RequestedRegion": "eu-west-1"},
                "StringLikeIfExists": {"cloudwatch:namespace": "/aws/sagemaker/*"},
            },
        }
    ]
    assert decide(statements, Request("cloudwatch:PutMetricData", "*")) == ALLOW
    wrong = Request("cloudwatch:PutMetricData", "*", {"cloudwatch:namespace": "Custom"})
    assert decide(statements, wrong) == IMPLICIT_DENY


def test_an_unknown_operator_is_not_silently_passed():
    statements = [
        {
            "Effect": "Allow",
            "Action": "s3:GetObject",
            "Resource": "*",
            "Condition": {"DateGreaterThan": {"aws:CurrentTime": "2020-01-01T00:00:00Z"}},
        }
    ]
    with pytest.raises(UnsupportedCondition, match="DateGreaterThan"):
        decide(statements, Request("s3:GetObject", f"{BUCKET}/x"))
