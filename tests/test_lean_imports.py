"""A command-line process keeps bitsandbytes out when its config cannot need it (finetuning/lean_imports.py), and
leaves it alone when the config may: quantized loading, 8-bit or paged optimizers, in any dialect's spelling."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from finetuning.lean_imports import config_needs_bitsandbytes

from .conftest import REPO, sft_config, write_yaml

# `main()` without argv, as the `finetuning` console script calls it; then what became of bitsandbytes.
PROBE = """
import json, sys
import finetuning.cli as cli
sys.argv = ["finetuning", *sys.argv[1:]]
code = cli.main()
entry = sys.modules.get("bitsandbytes", "absent")
print(json.dumps({"code": code, "bitsandbytes": "marked absent" if entry is None else "absent" if entry == "absent"
                  else "imported"}))
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
def test_a_training_process_without_quantization_never_imports_bitsandbytes(tmp_path, tiny_model_dir):
    config = write_yaml(tmp_path / "c.yaml", sft_config(tmp_path, tiny_model_dir, training_args={"max_steps": 1}))
    assert run_cli("sft", str(config)) == {"code": 0, "bitsandbytes": "marked absent"}
    assert (tmp_path / "out" / "checkpoint-final").is_dir()  # and the run trained and saved as usual


def test_a_process_whose_config_may_quantize_leaves_bitsandbytes_alone(tmp_path, tiny_model_dir):
    document = sft_config(tmp_path, tiny_model_dir, training_args={"optim": "paged_adamw_8bit"})
    config = write_yaml(tmp_path / "c.yaml", document)
    assert run_cli("validate", str(config))["bitsandbytes"] != "marked absent"
