"""The one error type serving raises for bad requests, carrying its HTTP status code.

Inside SageMaker's inference toolkit it is a GenericInferenceToolkitError, which the toolkit
answers with `status_code` and the message; elsewhere (tests, the local endpoint server) an
equivalent class with the same attributes.
"""

from __future__ import annotations

try:  # present in SageMaker's PyTorch inference images
    from sagemaker_inference.errors import GenericInferenceToolkitError as _Base
except ImportError:  # pragma: no cover - depends on the image

    class _Base(Exception):  # type: ignore[no-redef]
        def __init__(self, status_code: int, message: str | None = None, phrase=None):
            self.status_code = status_code
            self.message = message or "Invalid Request"
            self.phrase = phrase or self.message
            super().__init__(status_code, self.message, self.phrase)


class ServingError(_Base):
    """A request the endpoint refuses: 400 malformed, 413 too large, 415 unsupported type."""

    def __init__(self, status_code: int, message: str):
        super().__init__(status_code, message)
        self.status_code = status_code
        self.message = message

    def __str__(self) -> str:
        return f"{self.status_code}: {self.message}"


def bad_request(message: str) -> ServingError:
    return ServingError(400, message)


def too_large(message: str) -> ServingError:
    return ServingError(413, message)


def unsupported_type(message: str) -> ServingError:
    return ServingError(415, message)
