"""Loading a YAML config file into a validated config, with readable errors.

Every problem is reported at once, each as `dotted.path[index].field: message`, because fixing a config one
error per run is tedious (and slow when a cluster job has to start to show the next one). A config in another
system's dialect (config/dialects) is translated first, and its problems are reported at the keys the user wrote.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml
from pydantic import BaseModel, ValidationError

from finetuning.config.dotted import NO_OVERRIDES, Overrides, annotate, apply_overrides
from finetuning.config.experiment import (
    DPOExperimentConfig,
    ExperimentConfigBase,
    KTOExperimentConfig,
    SFTExperimentConfig,
)
from finetuning.config.messages import clean_message, merge_alternatives, shown_input
from finetuning.config.secrets import drop_masked, is_secret_key, mask_secrets
from finetuning.errors import UserError, did_you_mean
from finetuning.paths import resolve_user_path

if TYPE_CHECKING:
    from finetuning.config.dialects import Translation

logger = logging.getLogger(__name__)


class ConfigError(UserError):
    """A config that cannot be used. `problems` holds one line per problem."""

    def __init__(self, problems: list[str], source: str | os.PathLike[str] | None = None):
        super().__init__(list(problems))
        self.source = str(source) if source is not None else None

    def __str__(self) -> str:
        head = f"invalid config {self.source}" if self.source else "invalid config"
        return head + ":\n" + "\n".join(f"  {p}" for p in self.problems)


class _UniqueKeyLoader(yaml.SafeLoader):
    """A SafeLoader that refuses duplicate keys: PyYAML keeps the last one silently, so a second `training_args:`
    block would replace the first without a word."""

    def construct_mapping(self, node, deep=False):
        first_line: dict[Any, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":  # `<<: *defaults` may be overridden, by design
                continue
            key = self.construct_object(key_node, deep=True)
            with contextlib.suppress(TypeError):  # an unhashable key: the base class reports it
                if key in first_line:
                    raise yaml.constructor.ConstructorError(
                        None, None, f"duplicate key {key!r} (first on line {first_line[key]})", key_node.start_mark
                    )
                first_line[key] = key_node.start_mark.line + 1
        return super().construct_mapping(node, deep=deep)


def _read_text(path: Path) -> str:
    if path.is_dir():
        raise ConfigError([f"{path}: is a directory, not a config file"], path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError([f"config file not found: {path}"], path) from None
    except OSError as exc:
        raise ConfigError([f"{path}: cannot read the config file: {exc.strerror or exc}"], path) from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise ConfigError([f"{path}: invalid YAML at line {line}: not valid UTF-8"], path) from None


def read_yaml(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a YAML mapping; every failure is a `ConfigError` naming the resolved absolute path."""
    path = resolve_user_path(path)
    text = _read_text(path)
    try:
        data = yaml.load(text, Loader=_UniqueKeyLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark is not None else "unknown position"
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError([f"{path}: invalid YAML at {where}: {problem}"], path) from None
    if not isinstance(data, dict):
        kind = "empty" if data is None else type(data).__name__
        raise ConfigError([f"{path}: the top level must be a mapping of config sections, got {kind}"], path)
    return data


def load_config(
    path: str | os.PathLike[str], config_class: type[ExperimentConfigBase] = SFTExperimentConfig
) -> ExperimentConfigBase:
    """Load and validate a YAML config. Raises `ConfigError` with all problems; notices are on `.notices`."""
    return validate_config(read_yaml(path), config_class, source=path)


def config_class_for(method: Any) -> type[ExperimentConfigBase]:
    """The config model for a `method` value (absent: sft, the seed-000 default)."""
    classes = {"sft": SFTExperimentConfig, "dpo": DPOExperimentConfig, "kto": KTOExperimentConfig}
    if method is None:
        return SFTExperimentConfig
    if method not in classes:
        raise ConfigError([f"method: {method!r} is not a method; expected one of {', '.join(map(repr, classes))}"])
    return classes[method]


# Keys only a preference method's trainer arguments have: a config without `method:` and without `sft_args` that
# sets one of them is a DPO config (Silogen's `dpo` command needed no `method:` key).
_PREFERENCE_ONLY_KEYS = ("beta", "loss_type", "max_prompt_length", "rpo_alpha", "reference_free", "label_smoothing")


def infer_method(data: dict[str, Any], default: str | None = None) -> str:
    """The method a config is for: its `method` key; else `default` (the subcommand that runs it, as in the Silogen
    CLI: `finetuning dpo` means dpo); else, for `validate`, dpo when the shape says so (no `sft_args` section and a
    DPO-only training option such as `beta` or `loss_type`), and sft otherwise."""
    if data.get("method") is not None:
        return data["method"]
    if default is not None:
        return default
    training_args = data.get("training_args")
    shaped_as_dpo = isinstance(training_args, dict) and any(key in training_args for key in _PREFERENCE_ONLY_KEYS)
    return "dpo" if "sft_args" not in data and shaped_as_dpo else "sft"


@dataclass
class LoadedConfig:
    """A validated config, the dialect it was written in, and its translation (what `finetuning convert` prints)."""

    config: ExperimentConfigBase
    dialect: str
    translation: Translation


def load_config_file(
    path: str | os.PathLike[str],
    default_method: str | None = None,
    dialect: str | None = None,
    overrides: Overrides = NO_OVERRIDES,
) -> LoadedConfig:
    """Read a config in any dialect (`dialect`, else detected from its keys; logged once), apply the command line's
    dotted `overrides` to it as written (config/dotted.py; logged once, recorded in the resolved config), translate it
    to the native config and validate that; a problem found there is reported at the key the user wrote (and names
    the flag, when an override set it). The translation's notices come first in `.config.notices`."""
    from finetuning.config import dialects

    data = read_yaml(path)
    try:
        name = dialect or dialects.detect(data)
        logger.info("config dialect: %s", name)
        if overrides:
            data = apply_overrides(data, name, overrides, infer_method(data, default_method))
            logger.info("config overrides: %s", ", ".join(overrides.records()))
        translation = dialects.translate(data, name, dialects.environment_context())
    except UserError as error:
        raise ConfigError(error.problems, path) from None
    native = translation.native
    method = infer_method(native, default_method)
    try:
        cfg = validate_config({**native, "method": method}, config_class_for(method), source=path)
    except ConfigError as error:
        if native.get("method") is None:
            error.problems = [_method_hint(problem) for problem in error.problems]
        problems = dialects.problems_at_source(translation, error.problems)
        raise ConfigError(annotate(problems, overrides), path) from None
    if translation.problems:
        raise ConfigError(annotate(translation.problems, overrides), path)
    cfg._cli_overrides = overrides.records()
    if native.get("method") is None and default_method is None and method != "sft":
        cfg.notices.append(f"method: not given; read as {method} from its training_args (set `method: {method}`)")
    cfg.notices[:0] = translation.notices
    return LoadedConfig(cfg, name, translation)


def load_any_config(
    path: str | os.PathLike[str], default_method: str | None = None, dialect: str | None = None
) -> ExperimentConfigBase:
    """Load a config of any dialect and of whichever method its `method` key names (absent: see `infer_method`)."""
    return load_config_file(path, default_method, dialect).config


def _method_hint(problem: str) -> str:
    if problem == "sft_args: required key is missing":
        return problem + "; a DPO or KTO config: set `method: dpo` / `method: kto` (or run it with `finetuning dpo`)"
    return problem


def validate_config(
    data: dict[str, Any],
    config_class: type[ExperimentConfigBase] = SFTExperimentConfig,
    source: str | os.PathLike[str] | None = None,
) -> ExperimentConfigBase:
    """Validate an already parsed config mapping (e.g. after command-line overrides)."""
    data, notices = _fed_back(data)
    try:
        cfg = config_class.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, config_class, data), source) from None
    cfg.notices.extend(notices)
    return cfg


def _fed_back(data: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """A resolved `finetuning_config.yaml` given as a config: its `_provenance` (versions, git sha) is a record, not
    a setting, and a masked secret is not a token to send anywhere: both are dropped, the secret with a notice."""
    notices: list[str] = []
    data = drop_masked({k: v for k, v in data.items() if k != "_provenance"}, "", notices)
    return data, notices


# --- error formatting -------------------------------------------------------------------------------------------


def _members(annotation: Any) -> list[Any]:
    """Flatten Annotated / Union / Optional into the member types."""
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _members(typing.get_args(annotation)[0])
    if origin is typing.Union or type(annotation).__name__ == "UnionType":
        out: list[Any] = []
        for arg in typing.get_args(annotation):
            out.extend(_members(arg))
        return out
    return [annotation]


def _is_model(tp: Any) -> bool:
    return isinstance(tp, type) and issubclass(tp, BaseModel)


def _model_tags(model: type[BaseModel]) -> set[str]:
    tags = {model.__name__}
    for name in ("type", "peft_type", "quantization_type", "method"):
        info = model.model_fields.get(name)
        if info is not None and typing.get_origin(info.annotation) is typing.Literal:
            tags.update(str(v) for v in typing.get_args(info.annotation))
    return tags


# pydantic names union members it tried in `loc` by their schema, e.g. 'bool', 'str', 'list[str]'.
_SCHEMA_NAMES = {"bool", "str", "int", "float", "none", "dict", "list", "literal", "is-instance"}


def _looks_like_schema_name(seg: str) -> bool:
    return seg in _SCHEMA_NAMES or "[" in seg or seg.startswith(("function-", "constrained-"))


def _walk(loc: tuple[Any, ...], root: type[BaseModel], data: Any) -> tuple[str, type[BaseModel] | None]:
    """Turn a pydantic `loc` into a user path, dropping union tags; also return the innermost model class."""
    parts: list[str] = []
    tp: Any = root
    current: Any = data
    model: type[BaseModel] | None = root
    missing = object()
    for i, seg in enumerate(loc):
        last = i == len(loc) - 1
        members = _members(tp) if tp is not None else []
        models = [m for m in members if _is_model(m)]
        # A union tag names the member that was tried: skip it in the path, descend into that member.
        if isinstance(seg, str) and len(members) > 1:
            chosen = next((m for m in models if seg in _model_tags(m)), None)
            if chosen is not None:
                tp, model = chosen, chosen
                continue
            if _looks_like_schema_name(seg):
                tp = None
                continue
        if (
            isinstance(seg, str)
            and tp is None
            and _looks_like_schema_name(seg)
            and not (isinstance(current, dict) and seg in current)
        ):
            continue
        parts.append(f"[{seg}]" if isinstance(seg, int) else (seg if not parts else f".{seg}"))
        in_list = isinstance(current, list) and isinstance(seg, int) and -len(current) <= seg < len(current)
        current = current[seg] if in_list or isinstance(current, dict) and seg in current else missing
        # Advance the type alongside the data.
        next_tp: Any = None
        if isinstance(seg, str) and models:
            for m in models:
                if seg in m.model_fields:
                    model = m
                    next_tp = m.model_fields[seg].annotation
                    break
        elif isinstance(seg, int):
            for member in members:
                args = typing.get_args(member)
                if typing.get_origin(member) in (list, tuple) and args:
                    next_tp = args[0]
                elif typing.get_origin(member) is dict and len(args) == 2:
                    next_tp = args[1]
        if not last:
            tp = next_tp
            submodels = [m for m in _members(tp) if _is_model(m)] if tp is not None else []
            model = submodels[0] if len(submodels) == 1 else (model if submodels else None)
    return "".join(parts), model


def _message(err: dict[str, Any], model: type[BaseModel] | None) -> str:
    kind = err["type"]
    msg = err["msg"]
    if kind == "extra_forbidden":
        key = str(err["loc"][-1])
        return "unknown key" + did_you_mean(key, model.model_fields if model is not None else [])
    if kind == "missing":
        return "required key is missing"
    if kind == "too_short":
        ctx = err.get("ctx") or {}
        return f"must list at least {ctx.get('min_length')} item(s), got {ctx.get('actual_length')}"
    if kind == "value_error" and msg.startswith("Value error, "):
        msg = msg[len("Value error, ") :]
    elif kind == "assertion_error" and msg.startswith("Assertion failed, "):
        msg = msg[len("Assertion failed, ") :]
    msg = re.sub(r" or instance of \w+$", "", msg)  # a class name means nothing to someone writing YAML
    return clean_message(msg)


def _one_of(choices: list[str]) -> str:
    return choices[0] if len(choices) == 1 else ", ".join(choices[:-1]) + " or " + choices[-1]


def _tag_problem(err: dict[str, Any], path: str) -> str | None:
    """A wrong or missing `type:` of a data input (a discriminated union): name the key and the choices."""
    ctx = err.get("ctx") or {}
    if err["type"] not in ("union_tag_invalid", "union_tag_not_found"):
        return None
    key = str(ctx.get("discriminator", "")).strip("'")
    where = f"{path}.{key}" if path else key
    if err["type"] == "union_tag_not_found":
        return f"{where}: required key is missing"
    choices = [choice.strip() for choice in str(ctx.get("expected_tags", "")).split(",")]
    given = err["input"].get(key) if isinstance(err["input"], dict) else ctx.get("tag")
    return f"{where}: must be {_one_of(choices)}, got {'null' if given is None else repr(given)}"


def format_validation_error(exc: ValidationError, root: type[BaseModel], data: Any) -> list[str]:
    """One `dotted.path: message` line per problem, duplicates removed, in pydantic's order."""
    lines: list[str] = []
    given: dict[str, str] = {}
    for err in exc.errors(include_url=False):
        ctx = err.get("ctx") or {}
        if err["type"] == "training_args" and isinstance(ctx.get("problems"), list):
            lines.extend(str(p) for p in ctx["problems"])
            continue
        path, model = _walk(tuple(err["loc"]), root, data)
        if (tag_problem := _tag_problem(err, path)) is not None:
            lines.append(tag_problem)
            continue
        lines.append(f"{path}: {_message(err, model)}" if path else _message(err, model))
        if (shown := shown_input(err, secret=is_secret_key(path.rsplit(".", 1)[-1]))) is not None:
            given[path] = shown
    return merge_alternatives(lines, given)


# --- resolved config ---------------------------------------------------------------------------------------------


def dump_resolved_config(cfg: ExperimentConfigBase) -> dict[str, Any]:
    """The config with all defaults filled in, JSON/YAML-safe, secrets replaced by "***"; the command line's dotted
    overrides it was loaded with are recorded in `_provenance.overrides`.

    A legacy `training_args.logging_dir` is put back, so that the dump loads again as the same config.
    """
    data = cfg.model_dump(mode="json")
    if cfg.legacy_logging_dir is not None:
        data["training_args"]["logging_dir"] = cfg.legacy_logging_dir
    data["training_args"].update(cfg.engine_training_args())
    _make_paths_absolute(data)
    if cfg._cli_overrides:  # a record, not a setting: the values are in the dump already (see _fed_back)
        data["_provenance"] = {"overrides": list(cfg._cli_overrides)}
    return mask_secrets(data)


def _make_paths_absolute(data: dict[str, Any]) -> None:
    """Every local path of the dump made absolute (relative ones are relative to the working directory of the run),
    so that the saved config runs the same from anywhere. Hub ids (no such local path) stay as they are."""
    data_conf = data["data_conf"]
    for dataset in [*data_conf["training_data"].get("datasets", []), *data_conf["validation_data"].get("datasets", [])]:
        dataset["path"] = _dataset_path(dataset["path"])
    run_conf = data["run_conf"]
    for section, key in [(run_conf, "model"), (run_conf, "tokenizer"), (data.get("peft_conf") or {}, "name_or_path")]:
        if key in section:
            section[key] = _local_path(section[key])
    if run_conf.get("resume_from_checkpoint") not in (None, True, False, "auto"):
        run_conf["resume_from_checkpoint"] = _local_path(run_conf["resume_from_checkpoint"])
    model_args = run_conf.get("model_args") or {}
    paths = [(model_args, "cache_dir"), (model_args, "offload_folder")]
    paths += [(data["training_args"], key) for key in ("output_dir", "logging_dir", "deepspeed")]
    for section, key in paths:
        if isinstance(section.get(key), str):
            section[key] = str(resolve_user_path(section[key]))


def _dataset_path(path: str) -> str:
    """A data file's path absolute (even when missing); a Hub dataset id (not a local path, no data-file suffix)
    as written."""
    if os.path.splitext(path)[1].lower() in (".jsonl", ".json", ".parquet", ".csv"):
        return str(resolve_user_path(path))
    return _local_path(path)


def _local_path(name: Any) -> Any:
    """`name` as an absolute path when it is one (it exists here, or is written as a path); else unchanged."""
    if not isinstance(name, str) or not name:
        return name
    if name.startswith(("/", ".", "~")) or resolve_user_path(name).exists():
        return str(resolve_user_path(name))
    return name
