"""DeepSpeed ZeRO (`training_args.deepspeed`, a mapping or a JSON path): the batch fields filled from the batch plan,
"auto" values resolved, as the Silogen engine does.

The batch plan (batchsize_conf) is the one source of the batch sizes: DeepSpeed's three batch fields are written from
it, so the file cannot disagree with what the Trainer feeds (DeepSpeed would assert at start-up, after the model has
loaded). A value the user wrote that contradicts the plan is an error naming both; "auto" is what the plan says.
Under ZeRO-3 the final save must gather the sharded weights into one loadable model, so
`stage3_gather_16bit_weights_on_model_save` is switched on. The other "auto" values (optimizer, precision,
bucket sizes) are the Trainer's to resolve from its arguments and the model.
"""

from __future__ import annotations

import copy
import importlib.util
import logging
from typing import Any

from ..errors import UserError
from ..paths import read_json_object_file

logger = logging.getLogger(__name__)

DEEPSPEED_KEY = "training_args.deepspeed"
INSTALL_HINT = "install it: pip install 'finetuning[deepspeed]'"
GATHER_ON_SAVE = "stage3_gather_16bit_weights_on_model_save"


AUTO_FIELDS = {
    "train_micro_batch_size_per_gpu": "auto",
    "gradient_accumulation_steps": "auto",
    "train_batch_size": "auto",
    "gradient_clipping": "auto",
    "bf16": {"enabled": "auto"},
    "fp16": {"enabled": "auto"},
}


def zero_stage_config(stage: int) -> dict:
    """The engine's DeepSpeed config for a ZeRO stage (examples/deepspeed/zero2.json and zero3.json are these):
    everything the Trainer knows left "auto", no optimizer section (the Trainer's own AdamW, no optimizer op to
    compile), communication overlapped with the backward pass from stage 2 on."""
    zero: dict[str, Any] = {"stage": stage}
    if stage >= 2:
        zero.update(overlap_comm=True, contiguous_gradients=True, reduce_bucket_size="auto")
    if stage == 3:
        zero.update(stage3_prefetch_bucket_size="auto", stage3_param_persistence_threshold="auto")
        zero[GATHER_ON_SAVE] = True
    return {"zero_optimization": zero, **copy.deepcopy(AUTO_FIELDS)}


def deepspeed_requested(training_args: dict) -> bool:
    """The run trains under DeepSpeed (a config mapping or a file path given)."""
    return bool(training_args.get("deepspeed"))


def plan_batch_fields(plan) -> dict[str, int]:
    """DeepSpeed's batch fields as the batch plan fixes them (total = processes x micro-batch x accumulation)."""
    return {
        "train_micro_batch_size_per_gpu": plan.per_device_train_batch_size,
        "gradient_accumulation_steps": plan.gradient_accumulation_steps,
        "train_batch_size": plan.total_train_batch_size,
    }


def read_deepspeed_config(value: Any) -> dict:
    """The user's DeepSpeed config: the mapping itself, or the JSON object the file a path names (read here, so the
    Trainer gets the filled-in mapping). UserError when the file cannot be read or holds no JSON object."""
    if isinstance(value, dict):
        return value
    config, problems = read_deepspeed_file(value)
    if problems:
        raise UserError(problems)
    return config


def read_deepspeed_file(value: str) -> tuple[dict, list[str]]:
    """The JSON object a `training_args.deepspeed` path names, or the problems that stop it being read."""
    return read_json_object_file(value, DEEPSPEED_KEY, "a DeepSpeed config")


def zero_stage(config: dict) -> int:
    """The ZeRO stage the config asks for (0 without a zero_optimization section, as DeepSpeed reads it)."""
    section = config.get("zero_optimization") or {}
    return section.get("stage", 0) if isinstance(section, dict) else 0


def config_problems(config: dict, plan) -> list[str]:
    """What in the user's DeepSpeed config contradicts what the engine fills in: a batch field other than "auto" that
    differs from the batch plan, a stage DeepSpeed does not have, ZeRO-3 told not to gather the weights on save."""
    problems = []
    for field, planned in plan_batch_fields(plan).items():
        given = config.get(field, "auto")
        if given != "auto" and given != planned:
            problems.append(
                f"{DEEPSPEED_KEY}.{field}: {given!r} contradicts the batch plan's {planned} ({plan.describe()}); "
                'set it to "auto" (or leave it out): batchsize_conf decides the batch sizes'
            )
    section = config.get("zero_optimization", {})
    if not isinstance(section, dict):
        problems.append(f'{DEEPSPEED_KEY}.zero_optimization: a mapping (e.g. {{"stage": 2}}), not {section!r}')
    elif section.get("stage", 0) not in (0, 1, 2, 3):
        problems.append(f"{DEEPSPEED_KEY}.zero_optimization.stage: {section['stage']!r}; DeepSpeed has 0, 1, 2, 3")
    elif section.get("stage") == 3 and section.get(GATHER_ON_SAVE, True) is False:
        problems.append(
            f"{DEEPSPEED_KEY}.zero_optimization.{GATHER_ON_SAVE}: false would leave the final model in ZeRO shards; "
            "the engine saves one loadable model: set it to true (or leave it out)"
        )
    return problems


def filled_config(config: dict, plan) -> dict:
    """A copy of the user's config with the batch fields from the plan (and, under ZeRO-3, weights gathered on save);
    the user's mapping is left as it was."""
    problems = config_problems(config, plan)
    if problems:
        raise UserError(problems)
    filled = copy.deepcopy(config)
    filled.update(plan_batch_fields(plan))
    if zero_stage(filled) == 3:
        filled["zero_optimization"].setdefault(GATHER_ON_SAVE, True)
    return filled


def deepspeed_installed() -> bool:
    return importlib.util.find_spec("deepspeed") is not None


def deepspeed_arguments(args: dict, plan) -> dict:
    """The trainer's arguments with the DeepSpeed config settled: read from its file, the batch plan's fields written
    in, handed to the Trainer as a mapping (never the user's object, which stays as given)."""
    if not deepspeed_requested(args):
        return args
    if not deepspeed_installed():
        raise UserError(f"{DEEPSPEED_KEY}: the deepspeed package is not installed; {INSTALL_HINT}")
    return {**args, "deepspeed": filled_config(read_deepspeed_config(args["deepspeed"]), plan)}


LAUNCHER_VARIABLES = ("RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")


def prepare_deepspeed_start(training_args: dict) -> None:
    """What DeepSpeed needs before the model loads. One process started without a launcher (`finetuning sft`):
    DeepSpeed still sets up a process group, and without the launcher's variables it goes looking for MPI
    (mpi4py) and fails; they are set for a world of one, as a launcher would. ZeRO-3 partitions the weights while
    `from_pretrained` builds the model and asks DeepSpeed's own process group for the world size then: unless that
    group is up before the model loads, it sees one process and its batch check fails (platform-facts.md); gloo on
    CPU, nccl on a GPU."""
    if not deepspeed_requested(training_args):
        return
    import os

    from transformers.integrations import is_deepspeed_zero3_enabled

    if not any(name in os.environ for name in LAUNCHER_VARIABLES):
        single = {"RANK": "0", "LOCAL_RANK": "0", "WORLD_SIZE": "1", "MASTER_ADDR": "127.0.0.1"}
        os.environ.update(single, MASTER_PORT=str(_free_port()))
        logger.info(
            "DeepSpeed on one process without a launcher: a process group of one (port %s)", os.environ["MASTER_PORT"]
        )
    if is_deepspeed_zero3_enabled():
        import deepspeed
        import torch

        deepspeed.comm.init_distributed(dist_backend="nccl" if torch.cuda.is_available() else "gloo")


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
