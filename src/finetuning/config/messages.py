"""Problem lines in our wording: pydantic's messages cleaned up, alternatives merged, the value given shown."""

from __future__ import annotations

from typing import Any


def merge_alternatives(lines: list[str], given: dict[str, str] | None = None) -> list[str]:
    """Join `path: must be A` and `path: must be B` (one line per union member tried) into `must be A or B`;
    `given` (path → the value shown) then ends such a line with `, got VALUE`, once."""
    merged: dict[str, list[str]] = {}
    order: list[str] = []
    for line in lines:
        path, sep, message = line.partition(": must be ")
        key = path if sep else line
        if key not in merged:
            merged[key] = []
            order.append(key)
        if sep and message not in merged[key]:
            merged[key].append(message)
    given = given or {}
    return [
        f"{key}: must be {' or '.join(merged[key])}" + (f", got {given[key]}" if key in given else "")
        if merged[key]
        else key
        for key in order
    ]


# pydantic's explanations of a failed parse; the value given is shown instead (see `shown_input`).
PARSER_NOISE = (
    ", unable to interpret input",
    ", unable to parse string as an integer",
    ", unable to parse string as a number",
    ", got a number with a fractional part",
)
# Errors where the value given helps ("must be a valid integer, got 'eight'"); range errors quote the bound instead.
_SHOWS_INPUT = ("literal_error", "int_from_float", "enum", "model_type", "dict_type")


def shown_input(err: dict[str, Any], secret: bool = False) -> str | None:
    """The value of a type error as the user wrote it (YAML spelling), or None when it would not help."""
    kind, value = err["type"], err.get("input")
    if secret or not (kind.endswith(("_parsing", "_type")) or kind in _SHOWS_INPUT):
        return None
    if value is None or isinstance(value, bool):
        return "null" if value is None else str(value).lower()
    if not isinstance(value, (str, int, float)):
        return None
    return repr(value) if len(repr(value)) <= 60 else None


def clean_message(msg: str) -> str:
    """pydantic's wording → ours: `must be ...`, without the parser's explanations."""
    for noise in PARSER_NOISE:
        msg = msg.replace(noise, "")
    return "must be " + msg[len("Input should be ") :] if msg.startswith("Input should be ") else msg
