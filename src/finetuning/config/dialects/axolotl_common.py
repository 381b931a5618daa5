"""What the axolotl dialect's key groups share: typed reads of the user's values, and key declarations.

axolotl reads its YAML through pydantic in lax mode, so `learning_rate: 2e-5` (which YAML 1.1 reads as a string) is
the number 2e-5 there, and an empty value (`lora_model_dir:`) means "not set". The translation reads values the same
way. Each key handler checks its value and keeps the typed result in `AxolotlBuilder.values`; the group builders
(axolotl_model, axolotl_training, ...) then write the native keys from those values, because most axolotl options
mean something only together with others (micro_batch_size with gradient_accumulation_steps and the process count,
saves_per_epoch with num_epochs, adapter with load_in_4bit).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from finetuning.config.dialects.builder import Builder, Context, Fate, Key
from finetuning.errors import did_you_mean_or_choices

MISSING = object()


class AxolotlBuilder(Builder):
    """The translation state, with the typed value of every key that was given and valid (`values`)."""

    def __init__(self, source: Mapping[str, Any], context: Context):
        super().__init__(source, context)
        self.values: dict[str, Any] = {}

    def value(self, path: str, default: Any = None) -> Any:
        """The checked value of a key the user gave, or `default` (absent, empty or invalid: its problem is reported)."""
        return self.values.get(path, default)

    def given(self, path: str) -> bool:
        return path in self.values

    @property
    def rl(self) -> str | None:
        """The preference method (`rl: dpo|ipo|kto`), or None for SFT."""
        return self.values.get("rl")


# --- typed reads: a wrong type is a problem at the key, and MISSING is returned ----------------------------------------


def as_float(b: Builder, path: str, value: Any) -> Any:
    number = _float(value)
    if number is None:
        b.problem(path, f"must be a number, got {value!r}")
        return MISSING
    return number


def _float(value: Any) -> float | int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return value
    if isinstance(value, str):  # YAML 1.1 reads 2e-5 as a string; pydantic (and so axolotl) reads it as a number
        try:
            return float(value)
        except ValueError:
            return None
    return None


def as_int(b: Builder, path: str, value: Any, minimum: int | None = None) -> Any:
    number = _float(value)
    if number is None or not float(number).is_integer():
        b.problem(path, f"must be a whole number, got {value!r}")
        return MISSING
    if minimum is not None and number < minimum:
        b.problem(path, f"must be at least {minimum}, got {int(number)}")
        return MISSING
    return int(number)


def as_bool(b: Builder, path: str, value: Any) -> Any:
    if not isinstance(value, bool):
        b.problem(path, f"must be true or false, got {value!r}")
        return MISSING
    return value


def as_str(b: Builder, path: str, value: Any) -> Any:
    if not isinstance(value, str) or not value:
        b.problem(path, f"must be a non-empty string, got {value!r}")
        return MISSING
    return value


def as_strs(b: Builder, path: str, value: Any) -> Any:
    """A string or a list of strings, as a list."""
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not all(isinstance(item, str) and item for item in items):
        b.problem(path, f"must be a string or a list of strings, got {value!r}")
        return MISSING
    return list(items)


def as_ints(b: Builder, path: str, value: Any) -> Any:
    """A whole number or a list of them, as a list."""
    items = [value] if not isinstance(value, list) else value
    if not all(isinstance(item, int) and not isinstance(item, bool) for item in items):
        b.problem(path, f"must be a whole number or a list of whole numbers, got {value!r}")
        return MISSING
    return list(items)


def as_mapping(b: Builder, path: str, value: Any) -> Any:
    if not isinstance(value, Mapping):
        b.problem(path, f"must be a mapping of keys, got {value!r}")
        return MISSING
    return dict(value)


def as_any(b: Builder, path: str, value: Any) -> Any:
    return value


def one_of(*choices: Any) -> Callable[[Builder, str, Any], Any]:
    """A read that takes one of the listed values (a did-you-mean, or the list, otherwise)."""

    def read(b: Builder, path: str, value: Any) -> Any:
        if not any(value == choice and type(value) is type(choice) for choice in choices):  # 1 is no True here
            b.problem(path, f"unknown value {value!r}{did_you_mean_or_choices(value, map(str, choices))}")
            return MISSING
        return value

    return read


def at_least(minimum: int) -> Callable[[Builder, str, Any], Any]:
    return lambda b, path, value: as_int(b, path, value, minimum)


def fraction(b: Builder, path: str, value: Any) -> Any:
    """A number in [0, 1]."""
    number = as_float(b, path, value)
    if number is not MISSING and not 0 <= number <= 1:
        b.problem(path, f"must be between 0 and 1, got {number}")
        return MISSING
    return number


Read = Callable[[Builder, str, Any], Any]
Then = Callable[[AxolotlBuilder, str, Any], None]


def option(path: str, doc: str, read: Read = as_any, native: str | None = None, then: Then | None = None) -> Key:
    """A translated key: its value is read (`read`), kept in `values`, written to `native` as it is when given, and
    handed to `then` for anything else (the group builders do the rest)."""

    def handle(b: AxolotlBuilder, path: str, value: Any) -> None:
        checked = read(b, path, value)
        if checked is MISSING:
            return
        b.values[path] = checked
        if native is not None:
            b.set(native, checked, source=path)
        if then is not None:
            then(b, path, checked)

    return Key(path, "translated", doc, handle)


def renamed_as(path: str, native: str, read: Read = as_any, note: str = "") -> Key:
    """A key that is the native key, once its value is read the way axolotl reads it."""
    return option(path, f"`{native}`" + (f" ({note})" if note else ""), read, native)


def noticed_when(path: str, doc: str, fate: Fate = "accepted", when: Callable[[Any], bool] = bool) -> Key:
    """A key whose notice (`doc`) is logged only when its value asks for something (`when`): `false` for a feature
    flag asks for nothing, so it passes without a word."""

    def handle(b: AxolotlBuilder, path: str, value: Any) -> None:
        if when(value):
            b.notice(path, doc)

    return Key(path, fate, doc, handle)


def unused(b: AxolotlBuilder, paths: Iterable[str], why: str) -> None:
    """A notice for each given key that has no effect in this config (as axolotl ignores it there)."""
    for path in paths:
        if b.given(path):
            b.notice(path, f"not used: {why}")


def set_from(b: Builder, native: str, value: Any, *sources: str) -> None:
    """Write a native key whose value comes from the first of `sources` the user gave (none given: a default, which
    maps to no key of the user's)."""
    given = [path for path in sources if b.has(path)]
    b.set(native, value, source=given[0] if given else None)
