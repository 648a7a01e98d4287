"""Strict request validation against botocore's service models.

botocore's own ParamValidator checks types and required members only; AWS also refuses a value
outside an `enum`, a string that does not match the member's `pattern`, and anything outside
`min`/`max` (string and list lengths, map sizes, number ranges). `problems()` checks all of
those, recursively, and `validate()` raises `InvalidRequest` naming every one.

The models' patterns are Java regular expressions, matched against the whole value (SageMaker
refuses `my_job` as a job name although `^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}` finds `my` in
it). `java_pattern` translates the Java constructs that occur in the models (`\\p{L}` and the
other Unicode categories, POSIX classes such as `\\p{Alnum}`, UTF-16 surrogate pairs, a
quantified `$`) into Python's `re`; anything else it does not know raises `UnsupportedPattern`
rather than pass unchecked.
"""

from __future__ import annotations

import datetime
import functools
import re
import sys
import unicodedata
from collections.abc import Mapping
from typing import Any

import botocore.session
from botocore import xform_name


class InvalidRequest(AssertionError):
    """A request AWS would refuse; the message lists every problem."""


class UnsupportedPattern(ValueError):
    """A model pattern uses a Java construct this translator does not know."""


@functools.cache
def service_model(service: str):
    return botocore.session.get_session().get_service_model(service)


@functools.cache
def operation_name(service: str, method: str) -> str:
    """`create_training_job` -> `CreateTrainingJob` (as boto3 names client methods)."""
    model = service_model(service)
    for name in model.operation_names:
        if xform_name(name) == method:
            return name
    raise AttributeError(f"{service} has no operation for client method {method!r}")


def validate(service: str, operation: str, params: Mapping[str, Any]) -> None:
    found = problems(service, operation, params)
    if found:
        raise InvalidRequest(f"{service} {operation} would be refused:\n  " + "\n  ".join(found))


def problems(service: str, operation: str, params: Mapping[str, Any]) -> list[str]:
    """Every way `params` breaks the operation's input shape, as 'path: what' lines."""
    shape = service_model(service).operation_model(operation).input_shape
    out: list[str] = []
    if shape is None:
        if params:
            out.append(f"{operation} takes no parameters, got {sorted(params)}")
        return out
    _check(shape, params, operation, out)
    return out


# --- the walk --------------------------------------------------------------------------------


def _check(shape, value: Any, path: str, out: list[str]) -> None:
    kind = shape.type_name
    checker = _CHECKERS.get(kind)
    if checker is None:
        out.append(f"{path}: shape {shape.name} has type {kind!r}, which this validator lacks")
        return
    checker(shape, value, path, out)


def _structure(shape, value, path, out) -> None:
    if not isinstance(value, Mapping):
        out.append(f"{path}: expected a structure ({shape.name}), got {type(value).__name__}")
        return
    members = shape.members
    for name in value:
        if name not in members:
            out.append(f"{path}: unknown member {name!r} (known: {', '.join(sorted(members))})")
    for name in shape.required_members:
        if name not in value:
            out.append(f"{path}: missing required member {name!r}")
    if shape.is_tagged_union and len([v for v in value.values() if v is not None]) != 1:
        out.append(f"{path}: union {shape.name} needs exactly one member, got {sorted(value)}")
    for name, member_value in value.items():
        if name in members:
            _check(members[name], member_value, f"{path}.{name}", out)


def _list(shape, value, path, out) -> None:
    if not isinstance(value, (list, tuple)):
        out.append(f"{path}: expected a list ({shape.name}), got {type(value).__name__}")
        return
    _size(shape, len(value), "items", path, out)
    for i, item in enumerate(value):
        _check(shape.member, item, f"{path}[{i}]", out)


def _map(shape, value, path, out) -> None:
    if not isinstance(value, Mapping):
        out.append(f"{path}: expected a map ({shape.name}), got {type(value).__name__}")
        return
    _size(shape, len(value), "entries", path, out)
    for key, item in value.items():
        _check(shape.key, key, f"{path} key {key!r}", out)
        _check(shape.value, item, f"{path}[{key!r}]", out)


def _string(shape, value, path, out) -> None:
    if not isinstance(value, str):
        out.append(f"{path}: expected a string ({shape.name}), got {type(value).__name__}")
        return
    _size(shape, len(value), "characters", path, out)
    if shape.enum and value not in shape.enum:
        shown = ", ".join(shape.enum[:8]) + (", ..." if len(shape.enum) > 8 else "")
        out.append(
            f"{path}: {value!r} is not one of {shape.name}'s {len(shape.enum)} values ({shown})"
        )
    pattern = shape.metadata.get("pattern")
    if pattern is not None and not java_pattern(pattern).fullmatch(value):
        out.append(f"{path}: {value!r} does not match {shape.name}'s pattern {pattern!r}")


def _integer(shape, value, path, out) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        out.append(f"{path}: expected an integer ({shape.name}), got {value!r}")
        return
    _range(shape, value, path, out)


def _float(shape, value, path, out) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        out.append(f"{path}: expected a number ({shape.name}), got {value!r}")
        return
    _range(shape, value, path, out)


def _boolean(shape, value, path, out) -> None:
    if not isinstance(value, bool):
        out.append(f"{path}: expected a boolean ({shape.name}), got {value!r}")


def _timestamp(shape, value, path, out) -> None:
    if not isinstance(value, (datetime.datetime, datetime.date, str, int, float)) or isinstance(
        value, bool
    ):
        out.append(f"{path}: expected a timestamp ({shape.name}), got {value!r}")


def _blob(shape, value, path, out) -> None:
    if not isinstance(value, (bytes, bytearray, str)) and not hasattr(value, "read"):
        out.append(f"{path}: expected bytes ({shape.name}), got {type(value).__name__}")
        return
    if isinstance(value, (bytes, bytearray, str)):
        _size(shape, len(value), "bytes", path, out)


def _size(shape, size: int, unit: str, path: str, out: list[str]) -> None:
    low, high = shape.metadata.get("min"), shape.metadata.get("max")
    if low is not None and size < low:
        out.append(f"{path}: {size} {unit}, fewer than {shape.name}'s min {low}")
    if high is not None and size > high:
        out.append(f"{path}: {size} {unit}, more than {shape.name}'s max {high}")


def _range(shape, value, path, out) -> None:
    low, high = shape.metadata.get("min"), shape.metadata.get("max")
    if low is not None and value < low:
        out.append(f"{path}: {value!r} is below {shape.name}'s min {low}")
    if high is not None and value > high:
        out.append(f"{path}: {value!r} is above {shape.name}'s max {high}")


_CHECKERS = {
    "structure": _structure,
    "list": _list,
    "map": _map,
    "string": _string,
    "integer": _integer,
    "long": _integer,
    "float": _float,
    "double": _float,
    "boolean": _boolean,
    "timestamp": _timestamp,
    "blob": _blob,
}


# --- Java patterns -> Python re --------------------------------------------------------------

# java.util.regex's POSIX classes (US-ASCII only, as Java has them without UNICODE_CHARACTER_CLASS)
_POSIX = {
    "Lower": "a-z",
    "Upper": "A-Z",
    "ASCII": "\\x00-\\x7f",
    "Alpha": "a-zA-Z",
    "Digit": "0-9",
    "Alnum": "a-zA-Z0-9",
    "Punct": re.escape("!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~"),
    "Graph": "\\x21-\\x7e",
    "Print": "\\x20-\\x7e",
    "Blank": " \\t",
    "Cntrl": "\\x00-\\x1f\\x7f",
    "XDigit": "0-9a-fA-F",
    "Space": " \\t\\n\\x0b\\f\\r",
}
_PROPERTY = re.compile(r"\\([pP])\{(\w+)\}|\\p([A-Z])")
_SURROGATE_PAIR = re.compile(r"\\u(D[89AB][0-9A-F]{2})\\u(D[C-F][0-9A-F]{2})", re.IGNORECASE)
# `$` with a quantifier (`...)${1,128}` occurs in the models): an anchor repeated is the anchor.
_QUANTIFIED_END = re.compile(r"(?<!\\)\$(\{\d+(,\d*)?\}|[*+?])")


@functools.cache
def java_pattern(pattern: str) -> re.Pattern:
    """The model's Java regex as a compiled Python pattern (use `fullmatch`)."""
    text = _SURROGATE_PAIR.sub(_code_point_of_pair, pattern)
    text = _QUANTIFIED_END.sub("$", text)
    text = _replace_properties(text)
    try:
        return re.compile(text)
    except re.error as error:
        raise UnsupportedPattern(f"{pattern!r} (as {text!r}): {error}") from error


def _code_point_of_pair(match: re.Match) -> str:
    high, low = int(match.group(1), 16), int(match.group(2), 16)
    code = 0x10000 + ((high - 0xD800) << 10) + (low - 0xDC00)
    return f"\\U{code:08x}"


def _replace_properties(text: str) -> str:
    """`\\p{..}` -> ranges, inside a character class as they are, outside wrapped in [...]."""
    out: list[str] = []
    in_class = False
    i = 0
    while i < len(text):
        char = text[i]
        if char == "\\":
            match = _PROPERTY.match(text, i)
            if match:
                negated = match.group(1) == "P"
                ranges = _property_ranges(match.group(2) or match.group(3), text)
                if negated and in_class:
                    raise UnsupportedPattern(f"{text!r}: \\P{{..}} inside a character class")
                out.append(ranges if in_class else f"[{'^' if negated else ''}{ranges}]")
                i = match.end()
                continue
            out.append(text[i : i + 2])
            i += 2
            continue
        if char == "[" and not in_class:
            in_class = True
        elif char == "[" and in_class:
            raise UnsupportedPattern(
                f"{text!r}: nested character classes (Java union/intersection)"
            )
        elif char == "]" and in_class and out and out[-1] not in ("[", "[^"):
            in_class = False
        out.append(char)
        if char == "[" and text.startswith("^", i + 1):
            out[-1] = "[^"
            i += 1
        i += 1
    return "".join(out)


def _property_ranges(name: str, pattern: str) -> str:
    if name in _POSIX:
        return _POSIX[name]
    name = name.removeprefix("Is")
    if len(name) in (1, 2) and name[0] in "LMNPSZC":
        return _category_ranges(name)
    raise UnsupportedPattern(f"{pattern!r}: unknown property \\p{{{name}}}")


@functools.cache
def _category_ranges(category: str) -> str:
    """Every code point whose Unicode general category starts with `category`, as ranges."""
    ranges: list[tuple[int, int]] = []
    for code in range(sys.maxunicode + 1):
        if unicodedata.category(chr(code)).startswith(category):
            if ranges and ranges[-1][1] == code - 1:
                ranges[-1] = (ranges[-1][0], code)
            else:
                ranges.append((code, code))
    return "".join(
        f"\\U{low:08x}" if low == high else f"\\U{low:08x}-\\U{high:08x}" for low, high in ranges
    )
