"""Helpers to read a pipeline definition JSON in tests."""

from __future__ import annotations

from collections.abc import Iterator


def all_steps(definition: dict) -> Iterator[dict]:
    """Every step, including those inside condition branches."""
    pending = list(definition["Steps"])
    while pending:
        step = pending.pop(0)
        yield step
        if step["Type"] == "Condition":
            pending.extend(step["Arguments"].get("IfSteps", []))
            pending.extend(step["Arguments"].get("ElseSteps", []))


def step(definition: dict, name: str) -> dict:
    found = [s for s in all_steps(definition) if s["Name"] == name]
    assert len(found) == 1, f"expected one step {name!r}, found {len(found)}"
    return found[0]


def walk(node) -> Iterator:
    """Every dict, list and scalar inside a JSON value."""
    yield node
    if isinstance(node, dict):
        for value in node.values():
            yield from walk(value)
    elif isinstance(node, list):
        for value in node:
            yield from walk(value)


def references(node) -> list[str]:
    """The `Get` expressions inside a JSON value, in order."""
    return [n["Get"] for n in walk(node) if isinstance(n, dict) and isinstance(n.get("Get"), str)]
