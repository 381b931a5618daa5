"""A command-line process keeps bitsandbytes and DeepSpeed out when its config cannot need them
(finetuning/lean_imports.py), and leaves them alone when the config may: quantized loading, 8-bit or paged
optimizers, DeepSpeed ZeRO, in any dialect's spelling."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from finetuning.lean_imports import config_needs_bitsandbytes, config_needs_deepspeed

from .conftest import REPO, sft_config, write_yaml

# `main()` without argv, as the `finetuning` console script calls it; then what became of bitsandbytes.
PROBE = """
import json, sys
import finetuning.cli as cli
sys.argv = ["finetuning", *sys.argv[1:]]
code = cli.main()
def fate(library):
    entry = sys.modules.get(library, "absent")
    return "marked absent" if entry is None else "absent" if entry == "absent" else "imported"
print(json.dumps({"code": code, "bitsandbytes": fate("bitsandbytes"), "deepspeed": fate("deepspeed")}))
"""


def run_cli(*args: str) -> dict:
    done = subprocess.run(
        [sys.executable, "-c", PROBE, *args],
        cwd=REPO,
        env=dict(os.environ),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize(
    "text",
    [
        "quant_conf:\n  quantization_type: bits-and-bytes\n  load_in_4bit: true\n",
        "training_args:\n  optim: adamw_bnb_8bit\n",
        "training_args:\n  optim: paged_adamw_32bit\n",
        "base_model: x\nadapter: qlora\nload_in_4bit: true\n",  # axolotl
        "fine_tuning:\n  method: qlora\n",  # sectioned YAML
        '{"input": {"args": {"load_in_8bit": true}}}',  # a worker job
    ],
)
def test_configs_that_may_need_bitsandbytes(text):
    assert config_needs_bitsandbytes(text)


@pytest.mark.parametrize(
    "text",
    [
        "quant_conf:\n  quantization_type: no-quantization\n",
        '{"quant_conf": {"quantization_type": "no-quantization"}}',
        "peft_conf:\n  peft_type: LORA\ntraining_args:\n  optim: adamw_torch\n",
    ],
)
def test_configs_that_cannot(text):
    assert not config_needs_bitsandbytes(text)


@pytest.mark.slow
def test_a_training_process_without_quantization_or_zero_never_imports_bitsandbytes_or_deepspeed(
    tmp_path, tiny_model_dir
):
    config = write_yaml(tmp_path / "c.yaml", sft_config(tmp_path, tiny_model_dir, training_args={"max_steps": 1}))
    assert run_cli("sft", str(config)) == {"code": 0, "bitsandbytes": "marked absent", "deepspeed": "marked absent"}
    assert (tmp_path / "out" / "checkpoint-final").is_dir()  # and the run trained and saved as usual


def test_a_process_whose_config_may_quantize_leaves_bitsandbytes_alone(tmp_path, tiny_model_dir):
    document = sft_config(tmp_path, tiny_model_dir, training_args={"optim": "paged_adamw_8bit"})
    config = write_yaml(tmp_path / "c.yaml", document)
    assert run_cli("validate", str(config))["bitsandbytes"] != "marked absent"


@pytest.mark.parametrize(
    "text",
    [
        "training_args:\n  deepspeed: examples/deepspeed/zero2.json\n",
        '{"training_args": {"deepspeed": {"zero_optimization": {"stage": 3}}}}',
        "deepspeed: deepspeed_configs/zero3.json\n",  # axolotl
        "distributed:\n  use_deepspeed: true\n  zero_stage: 3\n",  # sectioned YAML
    ],
)
def test_configs_that_may_need_deepspeed(text):
    assert config_needs_deepspeed(text)


def test_configs_that_cannot_need_deepspeed():
    assert not config_needs_deepspeed("training_args:\n  fsdp: full_shard auto_wrap\n")


def test_a_process_whose_config_uses_zero_leaves_deepspeed_alone(tmp_path, tiny_model_dir):
    document = sft_config(tmp_path, tiny_model_dir, training_args={"deepspeed": "examples/deepspeed/zero2.json"})
    assert run_cli("validate", str(write_yaml(tmp_path / "c.yaml", document)))["deepspeed"] != "marked absent"
