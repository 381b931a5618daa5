"""`run_conf.config_overrides`: model config attributes replaced before the model loads (axolotl's
overrides_of_model_config), checked in the pre-flight against the model's config.json.

axolotl sets each key with setattr. In transformers 5 that breaks the commonest override: `rope_scaling` is a
deprecated alias that *replaces* `rope_parameters`, dropping rope_theta, and the model then fails to build (or, with a
`type` key next to the standard `rope_type: default`, silently keeps the default rope). So a mapping given for
`rope_scaling` or `rope_parameters` is merged into the config's rope parameters (per layer type where the model has
several), `type` read as `rope_type`, and the result validated by transformers' own rope checks before any weight
loads. Every other key is set as given; a key the config does not have is an error (a typo would otherwise be
ignored: from_pretrained keeps unknown attributes without using them).
"""

from __future__ import annotations

from typing import Any

from ..errors import did_you_mean

KEY = "run_conf.config_overrides"
ROPE_KEYS = ("rope_scaling", "rope_parameters")


def _owner(config, name: str):
    """The config holding attribute `name`: the model's own, or its text config (multimodal models); None if neither
    has it as a setting (methods are not settings)."""
    for candidate in (config, config.get_text_config()):
        if hasattr(candidate, name) and not callable(getattr(candidate, name)):
            return candidate
    return None


def _as_rope_parameters(value: dict[str, Any]) -> dict[str, Any]:
    """The pre-v5 spelling (`type`) as the current one (`rope_type`)."""
    value = dict(value)
    if "type" in value:
        rope_type = value.pop("type")
        value.setdefault("rope_type", rope_type)
    return value


def _merged_rope(config, value: dict[str, Any], where: str) -> tuple[dict | None, str | None]:
    """The config's rope parameters with `value` merged in, or a problem."""
    current = getattr(config, "rope_parameters", None) or {}
    nested_keys = getattr(config, "nested_rope_parameter_keys", lambda _: [])
    per_layer = list(nested_keys(current))
    if not per_layer:
        return {**current, **_as_rope_parameters(value)}, None
    if not set(value) <= set(per_layer):
        return None, (
            f"{where}: this model has rope parameters per layer type ({', '.join(per_layer)}); give one mapping per "
            "layer type, e.g. {" + f"{per_layer[0]}: " + "{rope_type: linear, factor: 2.0}}"
        )
    merged = dict(current)
    for layer, layer_value in value.items():
        merged[layer] = {**(current.get(layer) or {}), **_as_rope_parameters(layer_value or {})}
    return merged, None


def _override_rope(config, value: dict[str, Any], where: str) -> str | None:
    """Merge into rope_parameters and run transformers' rope validation; a problem line, or None."""
    if not hasattr(config, "standardize_rope_params"):  # a config without transformers 5's rope handling
        config.rope_scaling = value
        return None
    merged, problem = _merged_rope(config, value, where)
    if problem is not None:
        return problem
    from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS

    known = ["default", *ROPE_INIT_FUNCTIONS]
    layers = list(config.nested_rope_parameter_keys(merged)) or [None]
    for layer in layers:
        rope_type = (merged[layer] if layer else merged).get("rope_type", "default")
        if rope_type not in known:
            return f"{where}: unknown rope_type {rope_type!r}{did_you_mean(str(rope_type), known)}"
    config.rope_parameters = merged
    try:
        config.standardize_rope_params()
        config.validate_rope()
    except (KeyError, ValueError, TypeError) as error:
        message = error.args[0] if isinstance(error, KeyError) and error.args else error  # KeyError quotes its text
        return f"{where}: {message}"
    return None


def apply_config_overrides(config, overrides: dict[str, Any], key: str = KEY) -> list[str]:
    """Set each override on `config` (in place); one problem line per key that cannot be set (`key`: where the
    overrides are in the config)."""
    problems = []
    for name, value in overrides.items():
        where = f"{key}.{name}"
        target = _owner(config, name)
        if target is None:
            settings = sorted(config.to_dict())
            problems.append(
                f"{where}: not a setting of this model's config ({type(config).__name__}){did_you_mean(name, settings)}"
            )
        elif name in ROPE_KEYS and isinstance(value, dict):
            if (problem := _override_rope(target, value, where)) is not None:
                problems.append(problem)
        else:
            setattr(target, name, value)
    return problems


def config_override_problems(run_conf) -> list[str]:
    """The pre-flight check: the overrides applied to the model's config.json (nothing loads); an unreadable config
    is left to the model source checks. The outcome is kept per local config.json and overrides (checks_cache): a
    repeated `finetuning validate` imports no transformers for it."""
    from ..checks_cache import cached_outcome, file_digest
    from ..paths import resolve_user_path
    from .loading import model_config

    if not run_conf.config_overrides:
        return []

    def problems() -> list[str]:
        config = model_config(run_conf)
        return apply_config_overrides(config, run_conf.config_overrides) if config is not None else []

    config_file = resolve_user_path(run_conf.model) / (run_conf.model_args.subfolder or "") / "config.json"
    if not config_file.is_file():  # a hub id: checked each time
        return problems()
    key = [str(config_file), file_digest(config_file), run_conf.config_overrides]
    return cached_outcome("config-overrides", key, problems)


def config_override_kwargs(run_conf, overrides: dict[str, Any], key: str = KEY) -> dict[str, Any]:
    """The overrides as from_pretrained keywords, which it sets on the config it reads (passing a whole config instead
    would send the model_args that are config settings, e.g. use_cache, to the model class): each key with its
    checked value, a rope override as the merged rope_parameters, a text config's settings as that config. Also
    used for a rope mapping in model_args (`key` run_conf.model_args), which from_pretrained would set as it is."""
    from .loading import ModelSetupError, model_config, shown_source

    config = model_config(run_conf)
    if config is None:
        raise ModelSetupError(f"{key}: could not read the model's config from {shown_source(run_conf.model)}")
    if problems := apply_config_overrides(config, overrides, key):
        raise ModelSetupError(problems)
    kwargs = {}
    for name in overrides:
        owner = _owner(config, name)
        if owner is not config:
            text_key = next(attribute for attribute, value in vars(config).items() if value is owner)
            kwargs[text_key] = owner
        elif name in ROPE_KEYS and hasattr(config, "standardize_rope_params"):
            kwargs["rope_parameters"] = config.rope_parameters
        else:
            kwargs[name] = getattr(config, name)
    return kwargs
