"""axolotl's learning-rate schedule and optimizer keys → `training_args` (as axolotl's trainer builder sets them).

Schedule: `lr_scheduler` defaults to cosine (the trainer's default is linear). axolotl's own cosine variants apply
only with cosine, as in its scheduler mixin: `lr_quadratic_warmup` (wins over a minimum, as there),
`cosine_min_lr_ratio`, and with it `cosine_constant_lr_ratio`; they become `lr_scheduler_kwargs` of the native
cosine. `one_cycle` is torch's OneCycleLR (`lr_div_factor` its div_factor). Optimizers: every transformers name,
axolotl's spellings of them, and `adamw_hf` (gone from transformers 5) as adamw_torch.
"""

from __future__ import annotations

from typing import Any

from finetuning.config.dialects.axolotl_common import (
    AxolotlBuilder,
    as_bool,
    as_float,
    as_mapping,
    as_str,
    fraction,
    option,
    renamed_as,
    unused,
)
from finetuning.config.dialects.builder import Key
from finetuning.errors import did_you_mean

COSINE_KWARGS = {  # axolotl key → lr_scheduler_kwargs key of the native cosine (train/schedulers.py)
    "lr_quadratic_warmup": "quadratic_warmup",
    "cosine_min_lr_ratio": "min_lr_ratio",
    "cosine_constant_lr_ratio": "constant_lr_ratio",
}
# transformers' optimizer names (transformers 5), so that an unknown name is found here with a did-you-mean
TRANSFORMERS_OPTIMIZERS = (
    "adamw_torch", "adamw_torch_fused", "adamw_torch_npu_fused", "adafactor", "adamw_torch_4bit", "adamw_torch_8bit",
    "ademamix", "sgd", "adagrad", "adamw_bnb_8bit", "ademamix_8bit", "lion_8bit", "lion_32bit", "paged_adamw_32bit",
    "paged_adamw_8bit", "paged_ademamix_32bit", "paged_ademamix_8bit", "paged_lion_32bit", "paged_lion_8bit",
    "rmsprop", "rmsprop_bnb", "rmsprop_bnb_8bit", "rmsprop_bnb_32bit", "galore_adamw", "galore_adamw_8bit",
    "galore_adafactor", "galore_adamw_layerwise", "galore_adamw_8bit_layerwise", "galore_adafactor_layerwise",
    "lomo", "adalomo", "grokadamw", "schedule_free_radam", "schedule_free_adamw", "schedule_free_sgd",
    "apollo_adamw", "apollo_adamw_layerwise", "stable_adamw",
)  # fmt: skip
OPTIMIZER_ALIASES = {"adamw_8bit": "adamw_bnb_8bit"}  # axolotl's (and transformers') short spelling
OPTIMIZER_REFUSED = {
    "adamw_torch_xla": "runs on TPUs (torch_xla) only; use adamw_torch or adamw_torch_fused",
    "adamw_apex_fused": "NVIDIA apex's fused AdamW is gone from transformers 5; use adamw_torch_fused (the same "
    "fused kernel, in torch)",
    "adamw_anyprecision": "needs torchdistx, which is no longer maintained; use adamw_torch (or adamw_bnb_8bit to "
    "save memory)",
}
# axolotl's own optimizers (CustomSupportedOptimizers): not transformers', so not available here
AXOLOTL_OPTIMIZERS = (
    "optimi_adamw", "ao_adamw_4bit", "ao_adamw_8bit", "ao_adamw_fp8", "adopt_adamw", "came_pytorch", "muon", "dion",
    "sinkgd", "flash_adamw", "flash_adam", "flash_sgd", "flash_sgdw", "flash_lion", "q_galore_adamw8bit",
)  # fmt: skip
DEFAULT_OPTIMIZER = "adamw_torch_fused"  # axolotl's default (and transformers')


def _optimizer(b: AxolotlBuilder, path: str, value: str) -> None:
    if value == "adamw_hf":
        b.notice(path, "adamw_hf (transformers' own AdamW) is gone from transformers 5: adamw_torch, the same update")
        value = "adamw_torch"
    value = OPTIMIZER_ALIASES.get(value, value)
    if value in OPTIMIZER_REFUSED:
        b.problem(path, f"{value}: {OPTIMIZER_REFUSED[value]}")
    elif value in AXOLOTL_OPTIMIZERS:
        b.problem(
            path,
            f"{value} is one of axolotl's own optimizers, not available here; use a transformers one, "
            "e.g. adamw_torch_fused or adamw_bnb_8bit",
        )
    elif value not in TRANSFORMERS_OPTIMIZERS:
        hint = did_you_mean(value, TRANSFORMERS_OPTIMIZERS) or f"; expected one of {', '.join(TRANSFORMERS_OPTIMIZERS)}"
        b.problem(path, f"unknown optimizer {value!r}{hint}")
    else:
        b.set("training_args.optim", value, source=path)


def _optim_args(b: AxolotlBuilder, path: str, value: Any) -> None:
    """transformers reads optim_args as `key=value,key=value` (axolotl joins a mapping the same way)."""
    if isinstance(value, dict):
        value = ",".join(f"{key}={item}" for key, item in value.items())
    if not isinstance(value, str):
        b.problem(path, f"must be a mapping or a string key=value,key=value, got {value!r}")
        return
    b.set("training_args.optim_args", value, source=path)


def _learning_rate(b: AxolotlBuilder, path: str, value: float) -> None:
    b.set("training_args.learning_rate", float(value), source=path)


def build_optimization(b: AxolotlBuilder) -> None:
    """The optimizer's default, lr_scheduler (default cosine), its kwargs, and axolotl's cosine and one-cycle options
    merged into them."""
    if not b.given("optimizer"):
        b.set("training_args.optim", DEFAULT_OPTIMIZER)
    scheduler = b.value("lr_scheduler", "cosine")
    if scheduler == "rex":
        b.problem("lr_scheduler", "rex (axolotl's own schedule) is not available here; use cosine or one_cycle")
        return
    b.set("training_args.lr_scheduler_type", scheduler, source="lr_scheduler" if b.given("lr_scheduler") else None)
    kwargs = dict(b.value("lr_scheduler_kwargs", {}))
    if scheduler == "cosine":
        _cosine_options(b, kwargs)
    else:
        unused(b, COSINE_KWARGS, f"axolotl applies it to lr_scheduler cosine only, this is {scheduler}")
    if scheduler == "one_cycle" and b.given("lr_div_factor"):
        kwargs["div_factor"] = b.value("lr_div_factor")
        b.maps("training_args.lr_scheduler_kwargs.div_factor", "lr_div_factor")
    else:
        unused(b, ["lr_div_factor"], "it is OneCycleLR's div_factor, for lr_scheduler one_cycle")
    if kwargs:
        b.set("training_args.lr_scheduler_kwargs", kwargs)
        if b.given("lr_scheduler_kwargs"):
            b.maps("training_args.lr_scheduler_kwargs", "lr_scheduler_kwargs")


def _cosine_options(b: AxolotlBuilder, kwargs: dict[str, Any]) -> None:
    if b.value("lr_quadratic_warmup"):
        kwargs["quadratic_warmup"] = True
        b.maps("training_args.lr_scheduler_kwargs.quadratic_warmup", "lr_quadratic_warmup")
        unused(b, ["cosine_min_lr_ratio", "cosine_constant_lr_ratio"], "lr_quadratic_warmup wins, as in axolotl")
        return
    if not b.given("cosine_min_lr_ratio"):
        unused(b, ["cosine_constant_lr_ratio"], "axolotl applies it together with cosine_min_lr_ratio only")
        return
    for key in ("cosine_min_lr_ratio", "cosine_constant_lr_ratio"):
        if b.given(key):
            kwargs[COSINE_KWARGS[key]] = b.value(key)
            b.maps(f"training_args.lr_scheduler_kwargs.{COSINE_KWARGS[key]}", key)


OPTIM_KEYS: tuple[Key, ...] = (
    option("learning_rate", "`training_args.learning_rate` (required, as in axolotl)", as_float, then=_learning_rate),
    option(
        "lr_scheduler",
        "`training_args.lr_scheduler_type` (default cosine): any transformers scheduler, or one_cycle; rex refused",
        as_str,
    ),
    option("lr_scheduler_kwargs", "`training_args.lr_scheduler_kwargs`", as_mapping),
    option(
        "lr_quadratic_warmup",
        "`training_args.lr_scheduler_kwargs.quadratic_warmup` (cosine only; wins over cosine_min_lr_ratio)",
        as_bool,
    ),
    option(
        "cosine_min_lr_ratio",
        "`training_args.lr_scheduler_kwargs.min_lr_ratio`: cosine decays to this fraction of the peak (cosine only)",
        fraction,
    ),
    option(
        "cosine_constant_lr_ratio",
        "`training_args.lr_scheduler_kwargs.constant_lr_ratio`: the learning rate stays at the minimum from this "
        "fraction of the steps on (cosine with cosine_min_lr_ratio only)",
        fraction,
    ),
    option("lr_div_factor", "`training_args.lr_scheduler_kwargs.div_factor` (one_cycle only)", as_float),
    option(
        "optimizer",
        "`training_args.optim` (default adamw_torch_fused): every transformers optimizer; adamw_8bit = "
        "adamw_bnb_8bit; adamw_hf → adamw_torch (notice); adamw_torch_xla, adamw_apex_fused, adamw_anyprecision and "
        "axolotl's own optimizers refused",
        as_str,
        then=_optimizer,
    ),
    option("optim_args", "`training_args.optim_args` (a mapping is written key=value,...)", then=_optim_args),
    renamed_as("optim_target_modules", "training_args.optim_target_modules", note="e.g. for GaLore"),
    renamed_as("weight_decay", "training_args.weight_decay", as_float),
    renamed_as("adam_beta1", "training_args.adam_beta1", as_float),
    renamed_as("adam_beta2", "training_args.adam_beta2", as_float),
    renamed_as("adam_epsilon", "training_args.adam_epsilon", as_float),
    renamed_as("max_grad_norm", "training_args.max_grad_norm", as_float),
)
