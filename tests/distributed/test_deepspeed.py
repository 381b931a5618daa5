"""DeepSpeed ZeRO through `training_args.deepspeed`: the config gets the batch plan's fields (unit tests, no
launcher), and ZeRO-2 and ZeRO-3 with CPU offload train for real on 2 CPU processes (gloo, the CPU accelerator):
per-step losses within 1e-5 of the single-process run (= gloo DDP bit for bit, platform-facts.md), a resume from the
midway checkpoint continues the same loss trace, and the final model is one consolidated file plain transformers
loads with full shapes.

DeepSpeed JIT-compiles its ops on first use: its shared-memory comm op in every CPU run, DeepSpeedCPUAdam under
offload (accelerate swaps the Trainer's AdamW for it). Measured on this 2-core machine: under a minute each when it is
quiet, about 2.5 and 5 minutes while other jobs load it. The build cache is TORCH_EXTENSIONS_DIR (default here:
~/.cache/torch_extensions), so they are paid once per machine, not per session."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from finetuning.cli import main
from finetuning.errors import UserError
from finetuning.train.batch_size import BatchPlan
from finetuning.train.deepspeed import deepspeed_arguments, zero_stage_config
from finetuning.train.library_checks import check_deepspeed
from tests.conftest import REPO, sft_config, write_yaml
from tests.distributed.launch import launch_env, logged_losses, torchrun

EXAMPLES = REPO / "examples" / "deepspeed"
PLAN = BatchPlan(
    per_device_train_batch_size=2, gradient_accumulation_steps=2, per_device_eval_batch_size=2, num_processes=2
)
STEPS, MIDWAY = 4, 2
TOLERANCE = 1e-5
EXTENSIONS = os.environ.get("TORCH_EXTENSIONS_DIR") or str(Path.home() / ".cache" / "torch_extensions")


# --- the config the Trainer gets (no launcher) -----------------------------------------------------------------------


def test_batch_fields_come_from_the_plan_and_the_users_mapping_is_untouched():
    user = zero_stage_config(2)
    args = deepspeed_arguments({"deepspeed": user, "learning_rate": 1e-3}, PLAN)
    config = args["deepspeed"]
    assert config["train_micro_batch_size_per_gpu"] == 2
    assert config["gradient_accumulation_steps"] == 2
    assert config["train_batch_size"] == 8  # 2 processes x 2 x 2
    assert config["gradient_clipping"] == "auto"  # the Trainer resolves the rest from its arguments
    assert user["train_batch_size"] == "auto" and args["learning_rate"] == 1e-3


def test_a_json_path_is_read_and_zero3_gathers_the_weights_on_save(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "ds.json").write_text(json.dumps({"zero_optimization": {"stage": 3}, "train_batch_size": 8}))
    config = deepspeed_arguments({"deepspeed": "ds.json"}, PLAN)["deepspeed"]
    assert config["zero_optimization"] == {"stage": 3, "stage3_gather_16bit_weights_on_model_save": True}
    assert config["train_micro_batch_size_per_gpu"] == 2  # absent: filled, as "auto" is


def test_values_that_contradict_the_plan_are_errors_naming_key_and_both_values():
    with pytest.raises(UserError) as raised:
        deepspeed_arguments({"deepspeed": {"train_batch_size": 16, "gradient_accumulation_steps": 2}}, PLAN)
    assert raised.value.problems == [
        "training_args.deepspeed.train_batch_size: 16 contradicts the batch plan's 8 (2 process(es) x 2 per device x "
        '2 accumulation = 8); set it to "auto" (or leave it out): batchsize_conf decides the batch sizes'
    ]


def test_preflight_problems(tmp_path):
    assert check_deepspeed({"deepspeed": str(EXAMPLES / "zero3_offload.json")}, PLAN) == []
    (tmp_path / "list.json").write_text("[1]")
    assert check_deepspeed({"deepspeed": str(tmp_path / "list.json")}, PLAN) == [
        f"training_args.deepspeed: {tmp_path / 'list.json'}: a DeepSpeed config is a JSON object, not list"
    ]
    problems = check_deepspeed({"deepspeed": {"train_micro_batch_size_per_gpu": 4}, "fsdp": "full_shard"}, PLAN)
    assert problems[0] == "training_args.deepspeed: DeepSpeed and training_args.fsdp both shard the model; choose one"
    assert problems[1].startswith("training_args.deepspeed.train_micro_batch_size_per_gpu: 4 contradicts the batch")
    stage = check_deepspeed({"deepspeed": {"zero_optimization": {"stage": 4}}}, PLAN)
    assert stage == ["training_args.deepspeed.zero_optimization.stage: 4; DeepSpeed has 0, 1, 2, 3"]


def test_use_cpu_false_on_several_cpu_processes_is_refused(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    problems = check_deepspeed({"deepspeed": zero_stage_config(2), "use_cpu": False}, PLAN)
    assert problems == [
        "training_args.use_cpu: false with DeepSpeed on several CPU processes: DeepSpeed would size its batch for "
        "one process and stop; leave use_cpu out (the engine sets it) or set it to true"
    ]


def test_without_the_package_the_problem_says_how_to_install(monkeypatch):
    import finetuning.train.library_checks as checks

    monkeypatch.setattr(checks, "deepspeed_installed", lambda: False)
    assert check_deepspeed({"deepspeed": {"zero_optimization": {"stage": 2}}}) == [
        "training_args.deepspeed: the deepspeed package is not installed; install it: pip install "
        "'finetuning[deepspeed]'"
    ]


def test_shipped_stage_configs_are_the_engines():
    for stage in (2, 3):
        assert json.loads((EXAMPLES / f"zero{stage}.json").read_text()) == zero_stage_config(stage)
    offload = json.loads((EXAMPLES / "zero3_offload.json").read_text())
    assert offload["zero_optimization"]["offload_optimizer"]["device"] == "cpu"
    assert offload["optimizer"]["type"] == "AdamW"


def test_the_dialects_deepspeed_keys_reach_the_trainer(monkeypatch):
    from tests.config.dialects.test_axolotl import config as axolotl_config
    from tests.config.dialects.test_axolotl import native_of as axolotl_native
    from tests.config.dialects.test_sectioned import config as sectioned_config
    from tests.config.dialects.test_sectioned import native_of as sectioned_native

    monkeypatch.chdir(REPO)  # relative paths are relative to the working directory, as every path of a config
    axolotl = axolotl_native(axolotl_config(deepspeed="examples/deepspeed/zero3.json"))["training_args"]
    sectioned = sectioned_native(sectioned_config(distributed={"use_deepspeed": True, "zero_stage": 3}))
    for args in (axolotl, sectioned["training_args"]):
        config = deepspeed_arguments(args, PLAN)["deepspeed"]
        assert config["zero_optimization"]["stage"] == 3 and config["train_batch_size"] == 8


# --- 2 CPU processes (torchrun) -------------------------------------------------------------------------------------


def deepspeed_config(directory: Path, model: Path, deepspeed: str | dict | None, output: str = "out") -> Path:
    """Full fine-tuning, 8 examples a step (2 processes x 2 x 2 accumulation), a checkpoint midway, resumable."""
    directory.mkdir(parents=True, exist_ok=True)
    training_args = {"max_steps": STEPS, "save_strategy": "steps", "save_steps": MIDWAY}
    if deepspeed is not None:
        training_args["deepspeed"] = deepspeed
    config = sft_config(
        directory,
        model,
        batchsize_conf={"total_train_batch_size": 8, "max_per_device_train_batch_size": 2},
        training_args={**training_args, "output_dir": str(directory / output)},
        run_conf={"resume_from_checkpoint": "auto"},
    )
    return write_yaml(directory / f"{output}.yaml", config)


def run_deepspeed(directory: Path, model: Path, deepspeed) -> Path:
    """The whole run, then a second one resumed from a copy of its midway checkpoint; the output directory."""
    full = deepspeed_config(directory, model, deepspeed)
    result = torchrun("sft", str(full), env=launch_env(TORCH_EXTENSIONS_DIR=EXTENSIONS), timeout=900)
    assert result.returncode == 0, result.stderr[-4000:]
    assert result.stderr.count("final model saved") == 1
    resumed = deepspeed_config(directory, model, deepspeed, output="resumed")
    shutil.copytree(directory / "out" / f"checkpoint-{MIDWAY}", directory / "resumed" / f"checkpoint-{MIDWAY}")
    result = torchrun("sft", str(resumed), env=launch_env(TORCH_EXTENSIONS_DIR=EXTENSIONS), timeout=900)
    assert result.returncode == 0, result.stderr[-4000:]
    return directory


@pytest.fixture(scope="module")
def reference(tmp_path_factory, tiny_model_dir) -> list[float]:
    """The losses of the same run on one process (4 accumulation): what gloo DDP gives, bit for bit."""
    directory = tmp_path_factory.mktemp("reference")
    assert main(["sft", str(deepspeed_config(directory, tiny_model_dir, None))]) == 0
    return logged_losses(directory / "out")


def step_losses(output_dir: Path) -> dict[int, float]:
    rows = [json.loads(line) for line in (output_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]
    return {row["step"]: row["loss"] for row in rows if "loss" in row}


def assert_trains_like_ddp_resumes_and_saves_one_model(directory: Path, reference: list[float], tiny_model_dir):
    from transformers import AutoModelForCausalLM

    losses = logged_losses(directory / "out")
    assert len(losses) == STEPS
    assert max(abs(a - b) for a, b in zip(losses, reference, strict=True)) < TOLERANCE, (losses, reference)
    resumed = step_losses(directory / "resumed")
    assert sorted(resumed) == list(range(MIDWAY + 1, STEPS + 1))  # it went on from the checkpoint
    for step, loss in resumed.items():
        assert abs(loss - losses[step - 1]) < TOLERANCE, (step, loss, losses)
    final = directory / "out" / "checkpoint-final"
    model = AutoModelForCausalLM.from_pretrained(final)  # plain transformers, no DeepSpeed
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    assert model.lm_head.weight.shape[1] == base.config.hidden_size  # whole matrices, not ZeRO partitions
    assert all(parameter.numel() > 0 for parameter in model.parameters())
    assert not list(final.glob("global_step*"))  # the final model is not a DeepSpeed checkpoint
    assert_optimizer_state_split_over_two_ranks(directory / "out" / f"checkpoint-{MIDWAY}", model)


def assert_optimizer_state_split_over_two_ranks(checkpoint: Path, model) -> None:
    """ZeRO really sharded: DeepSpeed's checkpoint (named by `latest`) holds one optimizer partition per rank, each
    with half of the fp32 master weights (ZeRO-2 calls them single_partition_of_fp32_groups, ZeRO-3
    fp32_flat_groups)."""
    import torch

    step_dir = checkpoint / (checkpoint / "latest").read_text().strip()
    total = sum(parameter.numel() for parameter in model.parameters())
    for rank in (0, 1):
        state = torch.load(step_dir / f"zero_pp_rank_{rank}_mp_rank_00_optim_states.pt", weights_only=False)
        optimizer = state["optimizer_state_dict"]
        groups = optimizer.get("fp32_flat_groups") or optimizer["single_partition_of_fp32_groups"]
        assert optimizer["partition_count"] in (2, [2] * len(groups))
        assert abs(2 * sum(group.numel() for group in groups) - total) <= 64, (total, [g.numel() for g in groups])


@pytest.mark.slow
def test_zero2_trains_like_ddp_resumes_and_saves_a_loadable_model(tmp_path, tiny_model_dir, reference):
    directory = run_deepspeed(tmp_path, tiny_model_dir, str(EXAMPLES / "zero2.json"))
    assert (directory / "out" / f"checkpoint-{MIDWAY}" / "latest").is_file()  # DeepSpeed's own checkpoint
    assert_trains_like_ddp_resumes_and_saves_one_model(directory, reference, tiny_model_dir)


@pytest.mark.slow
def test_zero3_with_cpu_offload_trains_like_ddp_resumes_and_saves_a_consolidated_model(
    tmp_path, tiny_model_dir, reference
):
    """The shipped zero3_offload.json as it is: parameters and optimizer state in CPU memory, DeepSpeedCPUAdam."""
    directory = run_deepspeed(tmp_path, tiny_model_dir, str(EXAMPLES / "zero3_offload.json"))
    assert_trains_like_ddp_resumes_and_saves_one_model(directory, reference, tiny_model_dir)


@pytest.mark.slow
def test_one_process_without_a_launcher(tmp_path, tiny_model_dir, reference):
    """`finetuning sft` alone (no torchrun, e.g. ZeRO-Offload on one GPU): the engine gives DeepSpeed a process
    group of one instead of letting it look for MPI; ZeRO-3 trains as the single-process reference."""
    import subprocess
    import sys

    config = deepspeed_config(tmp_path, tiny_model_dir, str(EXAMPLES / "zero3.json"))
    env = {k: v for k, v in launch_env(TORCH_EXTENSIONS_DIR=EXTENSIONS).items() if k not in ("RANK", "WORLD_SIZE")}
    command = [sys.executable, "-m", "finetuning.cli", "sft", str(config)]
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, env=env, timeout=600)
    assert result.returncode == 0, result.stderr[-4000:]
    assert "DeepSpeed on one process without a launcher" in result.stderr
    losses = logged_losses(tmp_path / "out")
    assert max(abs(a - b) for a, b in zip(losses, reference, strict=True)) < TOLERANCE, (losses, reference)
