"""Config dialects: the configs of other fine-tuning systems, translated into the native config before anything else.

`detect(data)` names the dialect of a parsed config by its tell-tale top-level keys; `translate(data, name,
context)` turns it into a native mapping, with the notices to log and the map from native paths back to the keys the
user wrote (`relocate` rewrites native problem lines with it). Translation is a pure function of the data and the
`Context` (number of processes, CUDA), which `environment_context` reads for the caller. The design:
`docs/dialects/` and the spec's dialects.md.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from finetuning.config.dialects import axolotl, sectioned, vectorlm, worker
from finetuning.config.dialects.builder import Context, Key, Translation, key_table_markdown, relocate

__all__ = [
    "DIALECTS",
    "Context",
    "Dialect",
    "Translation",
    "detect",
    "environment_context",
    "key_table",
    "problems_at_source",
    "relocate",
    "translate",
]

NATIVE_KEYS = ("data_conf", "training_args", "batchsize_conf", "run_conf")


@dataclass(frozen=True)
class Dialect:
    """A config dialect: how it is recognised (and how the error for an unrecognised config describes it), how it is
    translated, and its key table (for the docs; empty for native, whose reference is the schema)."""

    name: str
    tell_tale: str
    matches: Callable[[Mapping[str, Any]], bool]
    translate: Callable[[Mapping[str, Any], Context], Translation]
    keys: tuple[Key, ...] = ()


def _native(data: Mapping[str, Any], context: Context) -> Translation:
    return Translation(dict(data))


DIALECTS: dict[str, Dialect] = {
    "native": Dialect("native", " / ".join(NATIVE_KEYS), lambda data: any(key in data for key in NATIVE_KEYS), _native),
    "vectorlm": Dialect("vectorlm", vectorlm.TELL_TALE, vectorlm.matches, vectorlm.translate, vectorlm.KEYS),
    "axolotl": Dialect("axolotl", axolotl.TELL_TALE, axolotl.matches, axolotl.translate, axolotl.KEYS),
    "worker": Dialect("worker", worker.TELL_TALE, worker.matches, worker.translate, worker.KEYS),
    "sectioned": Dialect("sectioned", sectioned.TELL_TALE, sectioned.matches, sectioned.translate, sectioned.KEYS),
}


def _config_error(problems: list[str]):
    from finetuning.config.loading import ConfigError  # loading imports this package: import when needed

    return ConfigError(problems)


def detect(data: Mapping[str, Any]) -> str:
    """The one dialect whose tell-tale keys the config has; none or several is a config error naming each."""
    found = [dialect.name for dialect in DIALECTS.values() if dialect.matches(data)]
    if len(found) == 1:
        return found[0]
    if found:
        head = f"the config's top-level keys fit several dialects ({', '.join(found)})"
    else:
        head = f"no config dialect has these top-level keys ({', '.join(map(str, data)) or 'none'})"
    tell_tales = "; ".join(f"{dialect.name}: {dialect.tell_tale}" for dialect in DIALECTS.values())
    raise _config_error([f"{head}; each dialect is told apart by: {tell_tales}; or name one with --dialect NAME"])


def translate(data: Mapping[str, Any], name: str, context: Context | None = None) -> Translation:
    """The config made native by the named dialect's translator; its `problems` are the user's to fix (an unknown
    dialect name is a `ConfigError`)."""
    if name not in DIALECTS:
        from finetuning.errors import did_you_mean_or_choices

        raise _config_error([f"--dialect: unknown dialect {name!r}{did_you_mean_or_choices(name, DIALECTS)}"])
    context = context or Context()
    return replace(DIALECTS[name].translate(data, context), context=context)


def problems_at_source(translation: Translation, native_problems: list[str]) -> list[str]:
    """The native validation's problems at the keys the user wrote. After a translation that found problems of its
    own (its native config is then partial), only those at keys that did translate, and not twice for one key."""
    if not translation.problems:
        return relocate(native_problems, translation.source_paths)
    reported = {problem.partition(": ")[0] for problem in translation.problems}
    more = relocate(native_problems, translation.source_paths, only_mapped=True)
    return translation.problems + [problem for problem in more if problem.partition(": ")[0] not in reported]


def key_table(name: str) -> str:
    """The Markdown table of a dialect's keys and their fates, as docs/dialects/NAME.md shows it."""
    return key_table_markdown(DIALECTS[name].keys)


def environment_context() -> Context:
    """The context of this run, without importing torch (configs load before it, and `validate` never imports it):
    WORLD_SIZE, an NVIDIA or AMD driver with a visible device, and whether flash_attn is installed."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    driver = any(os.path.exists(path) for path in ("/proc/driver/nvidia/version", "/dev/nvidiactl", "/dev/kfd"))
    return Context(
        num_processes=int(os.environ.get("WORLD_SIZE", "1")),
        cuda=driver and visible not in ("", "-1"),
        flash_attn=importlib.util.find_spec("flash_attn") is not None,
    )
