"""A small IAM policy evaluator for identity policies: enough to say whether a role's
statements allow one request (action, resource, condition context).

Follows the IAM evaluation logic for a single account without boundaries or SCPs: an explicit
Deny wins, else any matching Allow allows, else the request is implicitly denied. A statement
matches when its Action (or NotAction), Resource (or NotResource) and every Condition match.
Wildcards `*` and `?` work in actions (case-insensitively) and resources (case-sensitively).
Condition operators it does not know raise `UnsupportedCondition`, so nothing passes
unevaluated.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

ALLOW, DENY, IMPLICIT_DENY = "Allow", "ExplicitDeny", "ImplicitDeny"


class UnsupportedCondition(ValueError):
    """A condition operator (or a policy variable) this evaluator does not implement."""


@dataclass(frozen=True)
class Request:
    action: str
    resource: str
    # Condition keys of the request: {"iam:PassedToService": "sagemaker.amazonaws.com"}.
    context: Mapping[str, str | Sequence[str]] = field(default_factory=dict)


def decide(statements: Iterable[Mapping[str, Any]], request: Request) -> str:
    """ALLOW, DENY (an explicit Deny matched) or IMPLICIT_DENY."""
    allowed = False
    for statement in statements:
        if not _matches(statement, request):
            continue
        if statement.get("Effect") == "Deny":
            return DENY
        if statement.get("Effect") == "Allow":
            allowed = True
    return ALLOW if allowed else IMPLICIT_DENY


def allows(statements: Iterable[Mapping[str, Any]], request: Request) -> bool:
    return decide(statements, request) == ALLOW


def _listed(value: Any) -> list:
    return value if isinstance(value, list) else [value]


def _matches(statement: Mapping[str, Any], request: Request) -> bool:
    if "Action" in statement:
        if not any(_wildcard(a, request.action, fold=True) for a in _listed(statement["Action"])):
            return False
    elif "NotAction" in statement:
        if any(_wildcard(a, request.action, fold=True) for a in _listed(statement["NotAction"])):
            return False
    else:
        return False
    if "Resource" in statement:
        if not any(_wildcard(r, request.resource) for r in _listed(statement["Resource"])):
            return False
    elif "NotResource" in statement:
        if any(_wildcard(r, request.resource) for r in _listed(statement["NotResource"])):
            return False
    else:
        return False
    return all(
        _condition(operator, key, _listed(values), request.context)
        for operator, keys in (statement.get("Condition") or {}).items()
        for key, values in keys.items()
    )


def _wildcard(pattern: str, value: str, fold: bool = False) -> bool:
    if not isinstance(pattern, str):
        raise UnsupportedCondition(f"unresolved policy element {pattern!r}")
    if "${" in pattern:
        raise UnsupportedCondition(f"policy variables are not evaluated: {pattern!r}")
    return _compiled(pattern, fold).fullmatch(value) is not None


@functools.cache
def _compiled(pattern: str, fold: bool) -> re.Pattern:
    text = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.compile(text, re.IGNORECASE | re.DOTALL if fold else re.DOTALL)


def _string_equals(expected: str, actual: str) -> bool:
    return expected == actual


def _string_equals_folded(expected: str, actual: str) -> bool:
    return expected.lower() == actual.lower()


def _string_like(expected: str, actual: str) -> bool:
    return _wildcard(expected, actual)


def _bool(expected: str, actual: str) -> bool:
    return str(expected).lower() == str(actual).lower()


# operator -> (how one policy value matches one request value, negated?)
_OPERATORS = {
    "StringEquals": (_string_equals, False),
    "StringNotEquals": (_string_equals, True),
    "StringEqualsIgnoreCase": (_string_equals_folded, False),
    "StringNotEqualsIgnoreCase": (_string_equals_folded, True),
    "StringLike": (_string_like, False),
    "StringNotLike": (_string_like, True),
    "ArnEquals": (_string_like, False),
    "ArnLike": (_string_like, False),
    "ArnNotEquals": (_string_like, True),
    "ArnNotLike": (_string_like, True),
    "Bool": (_bool, False),
}


def _condition(operator: str, key: str, expected: list, context: Mapping) -> bool:
    qualifier, _, name = operator.rpartition(":")
    if_exists = name.endswith("IfExists")
    name = name.removesuffix("IfExists")
    present = key in context
    if name == "Null":
        # "true": the key must be absent; "false": present.
        return all((str(v).lower() == "true") != present for v in expected)
    if name not in _OPERATORS or qualifier not in ("", "ForAnyValue", "ForAllValues"):
        raise UnsupportedCondition(f"condition operator {operator!r}")
    match, negated = _OPERATORS[name]
    if not present:
        # A missing key matches nothing; negated operators and ...IfExists are then true.
        return if_exists or negated or qualifier == "ForAllValues"
    actual = _listed(context[key])
    hits = [any(match(e, a) for e in expected) for a in actual]
    result = all(hits) if qualifier == "ForAllValues" else any(hits)
    return not result if negated else result
