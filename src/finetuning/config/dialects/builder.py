"""What every dialect translator shares: reading the source config, writing the native one, and the key table.

A translator walks the user's config key by key. Each key of a dialect has one fate (`Key.fate`): translated into
native keys, refused with a reason and what to use instead, or accepted with a one-line notice. Every native key
written remembers the source key it came from (`source_paths`), so that a problem found later, by the native
validation, is reported at the key the user wrote. The same table renders the dialect's documentation.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from finetuning.config._base import is_number
from finetuning.errors import did_you_mean

Fate = Literal["translated", "refused", "accepted"]


@dataclass(frozen=True)
class Context:
    """What a translation may depend on besides the config, read by the caller (translation reads nothing)."""

    num_processes: int = 1  # WORLD_SIZE of the run
    cuda: bool = False  # an accelerator that can run bf16 and flash attention
    flash_attn: bool = False  # the flash_attn package is installed

    def describe(self) -> str:
        device = "CUDA" if self.cuda else "no CUDA"
        return f"{self.num_processes} process(es), {device}" + (", flash_attn installed" if self.flash_attn else "")


@dataclass
class Translation:
    """A dialect config made native: the native mapping, the notices to log once, for each native dotted path the
    source dotted path it came from (paths not listed are the same in both), and the problems found (the caller
    reports them together with those the native validation finds at the keys that did translate)."""

    native: dict[str, Any]
    notices: list[str] = field(default_factory=list)
    source_paths: dict[str, str] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)  # at the source keys; `native` is then partial
    context: Context = Context()  # what it was translated for (set by `dialects.translate`)


@dataclass(frozen=True)
class Key:
    """One key of a dialect: its fate, the one line the docs show (native target, or why it is refused / what the
    notice says), and the function that translates it, called with the key's path and value (None for a refused
    key, whose `doc` is the problem line, and for an accepted one, whose `doc` is the notice)."""

    path: str
    fate: Fate
    doc: str
    handle: Callable[[Builder, str, Any], None] | None = None
    section: bool = False  # a mapping whose own keys are in the table (walked into; `handle` may check it whole)


MISSING = object()


class Builder:
    """The state of one translation: the source config, the native config being built, and what was found."""

    def __init__(self, source: Mapping[str, Any], context: Context):
        self.source = source
        self.context = context
        self.native: dict[str, Any] = {}
        self.notices: list[str] = []
        self.problems: list[str] = []
        self.source_paths: dict[str, str] = {}

    # --- the source ---------------------------------------------------------------------------------------------

    def get(self, path: str, default: Any = None) -> Any:
        """The source value at a dotted path, or `default` when a part of the path is missing."""
        current: Any = self.source
        for part in path.split("."):
            if not isinstance(current, Mapping) or part not in current:
                return default
            current = current[part]
        return current

    def has(self, path: str) -> bool:
        return self.get(path, MISSING) is not MISSING

    # --- the native config --------------------------------------------------------------------------------------

    def set(self, native_path: str, value: Any, source: str | None = None) -> None:
        """Write a native value at a dotted path (sections created as needed); `source`: the user's key it came from."""
        *parents, last = native_path.split(".")
        current = self.native
        for part in parents:
            current = current.setdefault(part, {})
        current[last] = value
        if source is not None:
            self.source_paths[native_path] = source

    def maps(self, native_path: str, source: str) -> None:
        """Record where a native path (e.g. a list item's field) came from, for error messages."""
        self.source_paths[native_path] = source

    def translation(self, order: Iterable[str] = ()) -> Translation:
        """The result; top-level native sections in `order` first (so the converted YAML reads well)."""
        order = [key for key in order if key in self.native]
        native = {key: self.native[key] for key in [*order, *(key for key in self.native if key not in order)]}
        return Translation(native, self.notices, self.source_paths, self.problems)

    def notice(self, path: str, text: str) -> None:
        self.notices.append(f"{path}: {text}")

    def problem(self, path: str, text: str) -> None:
        self.problems.append(f"{path}: {text}")

    # --- typed reads: a wrong type is a problem at the source key, and None is returned -------------------------

    def integer(self, path: str, value: Any, minimum: int | None = None) -> int | None:
        if not (is_number(value) and float(value).is_integer()):
            self.problem(path, f"must be a whole number, got {value!r}")
            return None
        if minimum is not None and value < minimum:
            self.problem(path, f"must be at least {minimum}, got {value}")
            return None
        return int(value)

    def number(self, path: str, value: Any) -> float | None:
        if not is_number(value):
            self.problem(path, f"must be a number, got {value!r}")
            return None
        return value

    def boolean(self, path: str, value: Any) -> bool | None:
        if not isinstance(value, bool):
            self.problem(path, f"must be true or false, got {value!r}")
            return None
        return value

    def mapping(self, path: str, value: Any) -> Mapping[str, Any] | None:
        if not isinstance(value, Mapping):
            self.problem(path, f"must be a mapping of keys, got {value!r}")
            return None
        return value

    def valid(self, path: str, check: Callable[[Any], bool]) -> Any:
        """The source value at `path` when it passes `check`, else None, quietly: for a key that depends on another
        key's value, whose own handler reports it when it is wrong."""
        value = self.get(path, MISSING)
        return value if value is not MISSING and check(value) else None


def walk(builder: Builder, keys: Iterable[Key]) -> None:
    """Apply each key's fate to the source config: sections are descended into, every other key present is handled
    in the table's order (so a key may rely on those before it), and a key the table does not know is an error with
    a did-you-mean among the keys of its section."""
    table = {key.path: key for key in keys}
    _unknown_keys(builder, builder.source, "", table)
    for key in table.values():
        if not builder.has(key.path) or (key.section and not isinstance(builder.get(key.path), Mapping)):
            continue
        value = builder.get(key.path)
        if key.section:
            if key.handle is not None:
                key.handle(builder, key.path, value)
        elif key.fate == "refused":
            builder.problem(key.path, key.doc)
        elif key.handle is not None:
            key.handle(builder, key.path, value)
        else:
            builder.notice(key.path, key.doc)


def _unknown_keys(builder: Builder, mapping: Mapping[str, Any], prefix: str, table: dict[str, Key]) -> None:
    siblings = [path.rsplit(".", 1)[-1] for path in table if path.rpartition(".")[0] == prefix.rstrip(".")]
    for name, value in mapping.items():
        path = f"{prefix}{name}"
        key = table.get(path)
        if key is None:
            builder.problem(path, "unknown key" + did_you_mean(str(name), siblings))
        elif key.section and builder.mapping(path, value) is not None:
            _unknown_keys(builder, value, f"{path}.", table)


def renamed(path: str, native: str, note: str = "") -> Key:
    """A key whose value is the native key's value as it is (the native validation checks it)."""

    def handle(builder: Builder, path: str, value: Any) -> None:
        builder.set(native, value, source=path)

    return Key(path, "translated", f"`{native}`" + (f" ({note})" if note else ""), handle)


def section_key(path: str, handle: Callable[[Builder, str, Any], None] | None = None) -> Key:
    """A mapping whose own keys are in the table (walked into; `handle`, if given, sees the whole mapping)."""
    return Key(path, "translated", "a section: see its keys", handle, section=True)


def relocate(problems: list[str], source_paths: Mapping[str, str], only_mapped: bool = False) -> list[str]:
    """Problem lines `native.path: message` rewritten to `source.path: message` (rule 4: errors speak the user's
    dialect). The longest native prefix that maps wins, so `peft_conf.peft_kwargs.lora_alhpa` becomes
    `train_parameters.lora_peft_config.lora_alhpa` from the section's entry. `only_mapped`: leave out the lines at
    native paths no source key maps to."""
    lines = []
    for problem in problems:
        path, sep, message = problem.partition(": ")
        native = _mapped_prefix(path, source_paths) if sep and " " not in path else None
        if native is not None:
            lines.append(f"{source_paths[native]}{path[len(native) :]}: {message}")
        elif not only_mapped:
            lines.append(problem)
    return lines


def _mapped_prefix(path: str, source_paths: Mapping[str, str]) -> str | None:
    for native in sorted(source_paths, key=len, reverse=True):
        if path == native or path.startswith((native + ".", native + "[")):
            return native
    return None


def key_table_markdown(keys: Iterable[Key]) -> str:
    """The docs' table of a dialect's keys and their fates (sections left out: their keys are listed)."""
    lines = ["| key | fate | native key, or why |", "|---|---|---|"]
    for key in keys:
        if not key.section:
            doc = key.doc.replace("|", "\\|")
            lines.append(f"| `{key.path}` | {key.fate} | {doc} |")
    return "\n".join(lines)
