"""The same run on 1 process, 2 processes, 2 "nodes" and through `accelerate launch`: with the same
`total_train_batch_size` every optimizer step sees the same examples, so the per-step losses and the final weights
are equal (bit for bit on gloo DDP, platform-facts.md). It rests on two TrainingArguments defaults (the seedable
sampler, `average_tokens_across_devices`): a 2-process run has both on, and the engine warns when a config turns one
off. Other methods and dialects train under torchrun too, with their data prepared once and one voice (rank 0)."""

from __future__ import annotations

import logging
import subprocess
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from finetuning.cli import main
from finetuning.train.distributed import single_process_differences, warn_if_unlike_single_process
from tests.conftest import REPO, sft_config, write_yaml
from tests.distributed.launch import (
    accelerate_launch_command,
    launch_env,
    logged_losses,
    run_together,
    torchrun_module_command,
    two_node_commands,
)

STEPS = 8
PAIRS = REPO / "examples" / "data" / "preferences.jsonl"
VECTORLM_RAW = REPO / "examples" / "data" / "vectorlm-raw"
# rank 0 speaks for all: these appear once per run, however many processes train
ONCE = ("Training finished.",)
LOGGED_ONCE = ("final model saved",)


def equivalence_config(directory: Path, model: Path) -> Path:
    """Full fine-tuning (no dropout: nothing random per process), 8 examples a step: 1 process x 4 x 2 accumulation,
    or 2 processes x 4 x 1."""
    directory.mkdir(parents=True, exist_ok=True)
    config = sft_config(
        directory,
        model,
        batchsize_conf={"total_train_batch_size": 8, "max_per_device_train_batch_size": 4},
        training_args={"max_steps": STEPS, "save_strategy": "steps", "save_steps": 4},
    )
    return write_yaml(directory / "config.yaml", config)


def run_subprocess(command: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(command, cwd=REPO, capture_output=True, text=True, env=launch_env(), timeout=600)


def final_model(output_dir: Path) -> dict[str, torch.Tensor]:
    return load_file(output_dir / "checkpoint-final" / "model.safetensors")


def assert_spoken_once(result) -> None:
    """The run's summary and its last lines come from the main process alone."""
    for line in ONCE:
        assert result.stdout.count(line) == 1, result.stdout[-3000:]
    for line in LOGGED_ONCE:
        assert result.stderr.count(line) == 1, result.stderr[-3000:]


def assert_same_weights(weights: dict[str, torch.Tensor], reference: dict[str, torch.Tensor]) -> None:
    assert weights.keys() == reference.keys()
    for name, tensor in reference.items():
        assert torch.equal(weights[name], tensor), (name, (weights[name] - tensor).abs().max().item())


@pytest.fixture(scope="module")
def single_process(tmp_path_factory, tiny_model_dir) -> Path:
    """The reference: one process, 4 per device x 2 accumulation (in this process, as `finetuning sft` runs)."""
    directory = tmp_path_factory.mktemp("one-process")
    assert main(["sft", str(equivalence_config(directory, tiny_model_dir))]) == 0
    return directory / "out"


@pytest.fixture(scope="module")
def two_processes(tmp_path_factory, tiny_model_dir) -> tuple[Path, subprocess.CompletedProcess]:
    """`torchrun --nproc_per_node 2 -m finetuning sft config.yaml`, as a user types it."""
    directory = tmp_path_factory.mktemp("two-processes")
    config = equivalence_config(directory, tiny_model_dir)
    result = run_subprocess(torchrun_module_command("finetuning", "sft", str(config)))
    assert result.returncode == 0, result.stderr[-3000:]
    return directory / "out", result


@pytest.mark.slow
def test_two_processes_train_exactly_as_one(single_process, two_processes):
    output_dir, result = two_processes
    assert "batch: 2 process(es) x 4 per device x 1 accumulation = 8" in result.stderr
    reference = logged_losses(single_process)
    assert len(reference) == STEPS
    assert logged_losses(output_dir) == reference  # metrics.jsonl: one row a step, written by rank 0 alone
    assert_same_weights(final_model(output_dir), final_model(single_process))
    assert_spoken_once(result)
    checkpoint = output_dir / "checkpoint-4"
    assert (checkpoint / "rng_state_0.pth").is_file() and (checkpoint / "rng_state_1.pth").is_file()


@pytest.mark.slow
def test_the_equivalence_defaults_are_on_in_a_two_process_run(two_processes):
    """The two defaults the equality rests on, as the Trainer of the 2-process run had them."""
    output_dir, result = two_processes
    args = torch.load(output_dir / "checkpoint-final" / "training_args.bin", weights_only=False)
    assert (args.world_size, args.parallel_mode.name) == (2, "DISTRIBUTED")
    assert args.accelerator_config.use_seedable_sampler is True
    assert args.average_tokens_across_devices is True
    assert "will not train like the same config on one process" not in result.stderr


def test_turning_an_equivalence_default_off_is_named():
    assert single_process_differences({}) == []
    assert single_process_differences({"average_tokens_across_devices": True}) == []
    assert single_process_differences(
        {"average_tokens_across_devices": False, "accelerator_config": {"use_seedable_sampler": False}}
    ) == ["average_tokens_across_devices", "accelerator_config.use_seedable_sampler"]
    assert single_process_differences({"accelerator_config": '{"use_seedable_sampler": false}'}) == [
        "accelerator_config.use_seedable_sampler"
    ]


def test_a_multi_process_run_warns_of_it_and_a_single_process_run_does_not(monkeypatch, caplog):
    caplog.set_level(logging.WARNING, logger="finetuning.train.distributed")
    warn_if_unlike_single_process({"average_tokens_across_devices": False})
    assert caplog.records == []
    monkeypatch.setenv("WORLD_SIZE", "2")
    warn_if_unlike_single_process({"average_tokens_across_devices": False})
    (record,) = caplog.records
    assert record.getMessage().startswith(
        "training_args.average_tokens_across_devices: false: this 2-process run will not train like the same config "
        "on one process"
    )


@pytest.mark.slow
def test_two_nodes_on_loopback_train_exactly_as_one(tmp_path, tiny_model_dir, single_process):
    """Two torchrun launchers (`--nnodes 2 --node_rank 0|1`), one process each, meeting on 127.0.0.1."""
    config = equivalence_config(tmp_path, tiny_model_dir)
    (node0, out0, err0), (node1, out1, err1) = run_together(two_node_commands("sft", str(config)))
    assert node0 == 0 and node1 == 0, (err0[-2000:], err1[-2000:])
    assert "batch: 2 process(es) x 4 per device x 1 accumulation = 8" in err0
    assert logged_losses(tmp_path / "out") == logged_losses(single_process)
    assert_same_weights(final_model(tmp_path / "out"), final_model(single_process))
    assert out0.count("Training finished.") == 1 and "Training finished." not in out1  # global rank 0 speaks


@pytest.mark.slow
def test_accelerate_launch_trains_exactly_as_one(tmp_path, tiny_model_dir, single_process):
    """`accelerate launch --multi_gpu --num_processes 2` on CPU: torchrun underneath, and the engine's use_cpu."""
    config = equivalence_config(tmp_path, tiny_model_dir)
    result = run_subprocess(accelerate_launch_command("sft", str(config)))
    assert result.returncode == 0, result.stderr[-3000:]
    assert "batch: 2 process(es) x 4 per device x 1 accumulation = 8" in result.stderr
    args = torch.load(tmp_path / "out" / "checkpoint-final" / "training_args.bin", weights_only=False)
    assert args.world_size == 2
    assert logged_losses(tmp_path / "out") == logged_losses(single_process)
    assert_spoken_once(result)


@pytest.mark.slow
def test_dpo_trains_under_torchrun_tokenizing_once(tmp_path, single_process):
    """DPO on 2 processes, from the SFT reference's model (its chat-ml tokens are in the vocabulary already): the
    pairs are tokenized by rank 0 only (rank 1 reads its cache entry), one final model, one summary."""
    config = sft_config(
        tmp_path,
        single_process / "checkpoint-final",
        data=PAIRS,
        batchsize_conf={"total_train_batch_size": 4, "max_per_device_train_batch_size": 2},
        training_args={"max_steps": 3, "learning_rate": 0.001},
    )
    config["method"] = "dpo"
    del config["sft_args"]
    path = write_yaml(tmp_path / "dpo.yaml", config)
    result = run_subprocess(
        torchrun_module_command("tests.reliability.faults", "tokenize_dpo:1:LOG", "--", "dpo", str(path))
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "batch: 2 process(es) x 2 per device x 1 accumulation = 4" in result.stderr
    assert result.stderr.count("fault point: tokenize_dpo 1") == 1
    assert "fault point: tokenize_dpo 1 on rank 0" in result.stderr
    assert (tmp_path / "out" / "checkpoint-final" / "model.safetensors").is_file()
    assert len(logged_losses(tmp_path / "out")) == 3
    assert_spoken_once(result)


def vectorlm_config(tmp_path: Path, model: Path) -> Path:
    """A VectorLM config (seed 001's layout) whose dataset its `dataset_preprocess` has yet to write."""
    config = {
        "model": str(model),
        "enable_wandb_logging": False,
        "train_parameters": {
            "output_dir": str(tmp_path / "out"),
            "max_seq_len": 256,
            "epochs": 1,
            "seed": 11,
            "sharding_strategy": "NO_SHARD",
            "gradient_accumulation_steps": 1,
            "optimizer": {"lr": 1.0e-3},
            "lr_scheduler_type": "cosine",
            "warmup_ratio": 0.05,
            "checkpointing_enabled": False,
            "logging_steps": 1,
        },
        "dataset": {"train_bs": 8, "eval_bs": 8, "train_ds": str(tmp_path / "data"), "eval_ds": str(tmp_path / "data")},
        "dataset_preprocess": {
            "dataset_format": "hf",
            "data_field": "text",
            "packing_type": "partial",
            "add_bos_eos_tokens": True,
            "from_disk": True,
            "load_path": str(VECTORLM_RAW),
            "split": "train",
            "save_path": str(tmp_path / "data"),
            "truncate": False,
        },
    }
    return write_yaml(tmp_path / "vectorlm.yaml", config)


@pytest.mark.slow
def test_a_vectorlm_config_trains_under_torchrun_preprocessing_once(tmp_path, tiny_model_dir):
    """VectorLM's `dataset_preprocess` and the tokenization run on rank 0 only; rank 1 waits for their outputs."""
    path = vectorlm_config(tmp_path, tiny_model_dir)
    faults = ("preprocess:1:LOG", "tokenize:1:LOG", "--", "sft", str(path))
    result = run_subprocess(torchrun_module_command("tests.reliability.faults", *faults))
    assert result.returncode == 0, result.stderr[-3000:]
    for event in ("preprocess", "tokenize"):
        assert result.stderr.count(f"fault point: {event} 1") == 1, result.stderr[-3000:]
        assert f"fault point: {event} 1 on rank 0" in result.stderr
    assert "batch: 2 process(es) x 8 per device x 1 accumulation = 16" in result.stderr
    assert (tmp_path / "out" / "final-model" / "model.safetensors").is_file()
    assert len(logged_losses(tmp_path / "out")) == 7  # 100 rows / 16 a step, the last one partial
    assert result.stdout.count("Training finished.") == 1
