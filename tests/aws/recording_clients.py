"""Record (and validate) AWS calls made in tests.

- `ValidatingClient(target, "sagemaker", calls)` stands in front of a boto3 client or a local
  stand-in: each operation's keyword arguments are checked against the operation's input
  shape with the strict validator (service_model), recorded in `calls`, then forwarded. A
  request AWS would refuse raises `InvalidRequest` before it reaches the target.
- `record_botocore_calls(calls)` records every request any botocore client makes while it is
  active (the container scripts create their own clients), through the `before-call` event of
  each client created meanwhile.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import botocore.session
from service_model import operation_name, validate


@dataclass(frozen=True)
class Call:
    service: str
    operation: str
    params: dict = field(hash=False)
    # Who makes it: a label the IAM coverage test maps to a role ("deployer", "job", ...).
    caller: str = ""


class ValidatingClient:
    """A client whose every operation is validated and recorded, then forwarded."""

    def __init__(self, target: Any, service: str, calls: list[Call], caller: str = "") -> None:
        self._target = target
        self._service = service
        self._calls = calls
        self._caller = caller

    def __getattr__(self, method: str) -> Any:
        try:
            operation = operation_name(self._service, method)
        except AttributeError:
            # Not an operation (meta, exceptions, ...): nothing to validate.
            return getattr(self._target, method)
        forward = getattr(self._target, method)

        def call(**kwargs: Any) -> Any:
            validate(self._service, operation, kwargs)
            self._calls.append(Call(self._service, operation, kwargs, self._caller))
            return forward(**kwargs)

        call.__name__ = method
        return call


@contextlib.contextmanager
def record_botocore_calls(calls: list[Call], caller: str = "") -> Iterator[list[Call]]:
    """Record the requests of every botocore client created while this is active."""

    def before_call(model, params, **_: Any) -> None:
        service = model.service_model.service_name
        calls.append(Call(service, model.name, dict(_user_params(params)), caller))

    real_create_client = botocore.session.Session.create_client

    def create_client(session, *args: Any, **kwargs: Any):
        client = real_create_client(session, *args, **kwargs)
        client.meta.events.register("provide-client-params.*.*", _keep_user_params)
        client.meta.events.register("before-call.*.*", before_call)
        return client

    botocore.session.Session.create_client = create_client
    try:
        yield calls
    finally:
        botocore.session.Session.create_client = real_create_client


# `before-call` sees the serialized request; the caller's own keyword arguments are kept in
# the request context by `provide-client-params` (which sees them first).
_USER_PARAMS = "bincount_user_params"


def _keep_user_params(params: dict, context: dict, **_: Any) -> None:
    context[_USER_PARAMS] = dict(params)


def _user_params(request: dict) -> dict:
    return request.get("context", {}).get(_USER_PARAMS, {})
