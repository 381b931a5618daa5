"""axolotl's preference training (`rl: dpo|ipo|kto` and their options) and its hub and tracking keys.

`rl` picks the native method (ipo is DPO with the ipo loss, as axolotl configures it); the options are the TRL
trainer arguments axolotl passes them as (`rl_beta` → beta, `kto_desirable_weight` → desirable_weight, ...). W&B is on
when `wandb_project` is set (or `use_wandb`), and its keys fill the native `wandb` section; `hub_model_id` makes the
trainer push to a private Hub repository, as axolotl's builder does.
"""

from __future__ import annotations

from typing import Any

from finetuning.config.dialects.axolotl_common import (
    MISSING,
    AxolotlBuilder,
    as_bool,
    as_float,
    as_str,
    as_strs,
    at_least,
    fraction,
    noticed_when,
    option,
    renamed_as,
    unused,
)
from finetuning.config.dialects.builder import Key
from finetuning.errors import did_you_mean_or_choices

RL_METHODS = {"dpo": "dpo", "ipo": "dpo", "kto": "kto"}
RL_REFUSED = ("orpo", "simpo", "grpo", "gdpo", "ebft")
# axolotl key → (TRL argument, the rl values it applies to)
RL_ARGUMENTS = {
    "rl_beta": ("beta", ("dpo", "ipo", "kto")),
    "kto_desirable_weight": ("desirable_weight", ("kto",)),
    "kto_undesirable_weight": ("undesirable_weight", ("kto",)),
    "dpo_loss_type": ("loss_type", ("dpo",)),
    "dpo_loss_weights": ("loss_weights", ("dpo",)),
    "dpo_label_smoothing": ("label_smoothing", ("dpo",)),
    "dpo_use_weighting": ("use_weighting", ("dpo", "ipo")),
    "dpo_padding_free": ("padding_free", ("dpo", "ipo")),
    "precompute_ref_log_probs": ("precompute_ref_log_probs", ("dpo", "ipo", "kto")),
    "max_prompt_len": ("max_prompt_length", ("dpo", "ipo", "kto")),
}
WANDB = {  # axolotl key → native wandb key
    "wandb_project": "project",
    "wandb_entity": "entity",
    "wandb_name": "run_name",
    "wandb_watch": "watch",
    "wandb_log_model": "log_model",
    "wandb_mode": "mode",
}
MLFLOW = {  # axolotl key → native tracking key
    "mlflow_tracking_uri": "mlflow_server_uri",
    "mlflow_experiment_name": "experiment_name",
    "mlflow_run_name": "run_name",
    "hf_mlflow_log_artifacts": "hf_mlflow_log_artifacts",
}


def _rl(b: AxolotlBuilder, path: str, value: Any) -> Any:
    if value in RL_METHODS:
        return value
    if value in RL_REFUSED:
        b.problem(path, f"{value} is not available here; supported: {', '.join(RL_METHODS)}")
    else:
        b.problem(path, f"unknown value {value!r}{did_you_mean_or_choices(value, RL_METHODS)}")
    return MISSING


def build_rl(b: AxolotlBuilder) -> None:
    """The method, and the preference options of the chosen rl (the others noticed as not used)."""
    rl = b.rl
    b.set("method", RL_METHODS.get(rl, "sft"), source="rl" if rl else None)
    if rl is None:
        unused(b, RL_ARGUMENTS, "rl is not set (this is SFT)")
        return
    if rl == "ipo":
        b.set("training_args.loss_type", ["ipo"], source="rl")
    if rl == "kto":  # axolotl passes both weights, 1.0 unless set
        for key in ("kto_desirable_weight", "kto_undesirable_weight"):
            b.set(f"training_args.{RL_ARGUMENTS[key][0]}", b.value(key, 1.0), source=key if b.given(key) else None)
    for key, (argument, applies) in RL_ARGUMENTS.items():
        if not b.given(key) or (key.startswith("kto_") and rl == "kto"):
            continue
        if rl in applies:
            b.set(f"training_args.{argument}", b.value(key), source=key)
        else:
            b.notice(key, f"not used: it applies to rl {' / '.join(applies)}, this is {rl}")


def build_tracking(b: AxolotlBuilder) -> None:
    """W&B from the wandb_* keys (on with wandb_project, or use_wandb), MLflow from the mlflow_* keys."""
    enabled = b.value("use_wandb", b.given("wandb_project"))
    if enabled and not b.given("wandb_project"):
        b.problem("wandb_project", "required when use_wandb is true (the W&B project the run logs to)")
    elif enabled:
        b.maps("wandb", "wandb_project")
        for key, native in WANDB.items():
            if b.given(key):
                b.set(f"wandb.{native}", b.value(key), source=key)
    else:
        unused(b, [key for key in WANDB if key != "wandb_project"], "W&B is off (no wandb_project)")
    mlflow = b.value("use_mlflow", b.given("mlflow_tracking_uri"))
    if mlflow and not b.given("mlflow_experiment_name"):
        b.problem("mlflow_experiment_name", "required with MLflow tracking (the experiment the run is logged to)")
    elif mlflow:
        for key, native in MLFLOW.items():
            if b.given(key):
                b.set(f"tracking.{native}", b.value(key), source=key)
        b.maps("tracking", "use_mlflow" if b.given("use_mlflow") else "mlflow_tracking_uri")
        if not b.given("mlflow_tracking_uri"):  # the native empty string: MLFLOW_TRACKING_URI decides
            b.set("tracking.mlflow_server_uri", "")
    else:
        unused(b, [key for key in MLFLOW if key != "mlflow_tracking_uri"], "MLflow is off (no mlflow_tracking_uri)")


def _hub_model_id(b: AxolotlBuilder, path: str, value: str) -> None:
    for key, setting in (("hub_model_id", value), ("push_to_hub", True), ("hub_private_repo", True)):
        b.set(f"training_args.{key}", setting, source=path)
    b.notice(
        path,
        f"the trainer pushes to the private Hub repository {value} at every save; that needs a Hugging Face token "
        "(HF_TOKEN, or `hf auth login`), without one the run stops at its start",
    )


def _wandb_choice(*choices: str):
    """wandb_watch / wandb_log_model: strings, where YAML's `false` means the string "false"."""

    def read(b: AxolotlBuilder, path: str, value: Any) -> Any:
        value = "false" if value is False else value
        if value not in choices:
            b.problem(path, f"unknown value {value!r}{did_you_mean_or_choices(value, choices)}")
            return MISSING
        return value

    return read


RL_KEYS: tuple[Key, ...] = (
    option(
        "rl",
        "`method`: dpo → dpo, ipo → dpo with `training_args.loss_type: [ipo]`, kto → kto; orpo, simpo, grpo, "
        "gdpo, ebft refused",
        _rl,
    ),
    option("rl_beta", "`training_args.beta`", as_float),
    option("kto_desirable_weight", "`training_args.desirable_weight` (kto; default 1.0)", as_float),
    option("kto_undesirable_weight", "`training_args.undesirable_weight` (kto; default 1.0)", as_float),
    option("dpo_loss_type", "`training_args.loss_type` (dpo)", as_strs),
    option("dpo_loss_weights", "`training_args.loss_weights` (dpo)"),
    option("dpo_label_smoothing", "`training_args.label_smoothing` (dpo)", fraction),
    option("dpo_use_weighting", "`training_args.use_weighting` (dpo)", as_bool),
    option("dpo_padding_free", "`training_args.padding_free` (dpo)", as_bool),
    option("precompute_ref_log_probs", "`training_args.precompute_ref_log_probs`", as_bool),
    option("max_prompt_len", "`training_args.max_prompt_length` (prompts keep their last tokens)", at_least(1)),
)

TRACKING_KEYS: tuple[Key, ...] = (
    option(
        "hub_model_id",
        "`training_args.hub_model_id`, `push_to_hub: true`, `hub_private_repo: true` (notice: needs a Hugging Face "
        "token)",
        as_str,
        then=_hub_model_id,
    ),
    renamed_as("hub_strategy", "training_args.hub_strategy", as_str),
    renamed_as("hub_revision", "training_args.hub_revision", as_str),
    option("use_wandb", "the native `wandb` section on (true) or off (false); default: on with wandb_project", as_bool),
    option("wandb_project", "`wandb.project` (turns W&B on)", as_str),
    option("wandb_entity", "`wandb.entity`", as_str),
    option("wandb_name", "`wandb.run_name`", as_str),
    option("wandb_watch", "`wandb.watch`", _wandb_choice("false", "gradients", "parameters", "all")),
    option("wandb_log_model", "`wandb.log_model`", _wandb_choice("false", "end", "checkpoint")),
    option("wandb_mode", "`wandb.mode`", _wandb_choice("online", "offline", "disabled")),
    Key("wandb_run_id", "refused", "the trainer starts the W&B run; set WANDB_RUN_ID in the environment to resume one"),
    option("use_mlflow", "the native `tracking` (MLflow) section; default: on with mlflow_tracking_uri", as_bool),
    option("mlflow_tracking_uri", "`tracking.mlflow_server_uri`", as_str),
    option("mlflow_experiment_name", "`tracking.experiment_name`", as_str),
    option("mlflow_run_name", "`tracking.run_name`", as_str),
    option("hf_mlflow_log_artifacts", "`tracking.hf_mlflow_log_artifacts`", as_bool),
    noticed_when(
        "strict",
        "axolotl's switch for overriding the YAML from its own command line; nothing to switch here",
        when=lambda value: True,
    ),
    noticed_when(
        "test_value",
        "not an axolotl option (axolotl ignores keys it does not know, as one of its examples shows); ignored",
        when=lambda value: True,
    ),
)
