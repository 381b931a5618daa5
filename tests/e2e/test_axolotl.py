"""axolotl's own example configs (examples/axolotl: only the paths changed) on the demo's tiny models: every one
validates, the Llama-3 LoRA one trains on a CPU as shipped, and the native config `finetuning convert` prints for it
trains exactly the same (rule 7 of the dialect design: same tokens, labels, batch plan and optimizer, so the same
losses and the same adapter weights)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from finetuning.cli import main
from tests.config.dialects.test_axolotl import EXAMPLES
from tests.conftest import REPO
from tests.test_examples import demo_root, in_demo_root  # noqa: F401 (fixtures)

LORA_1B = "examples/axolotl/llama-3-lora-1b.yml"


def config_of(path: str) -> dict:
    return yaml.safe_load(Path(path).read_text() if Path(path).is_absolute() else (REPO / path).read_text())


def _state(output: Path) -> dict:
    return json.loads(next(output.glob("checkpoint-*/trainer_state.json")).read_text())


def _trained_curve(output: Path) -> list[dict]:
    """The logged losses, gradient norms, learning rates and evaluation losses, step by step (no timings)."""
    keep = ("step", "loss", "grad_norm", "learning_rate", "eval_loss")
    return [{key: entry[key] for key in keep if key in entry} for entry in _state(output)["log_history"][:-1]]


def _adapter(output: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(output / "checkpoint-final" / "adapter_model.safetensors"))


@pytest.fixture
def demo_sft_model(in_demo_root):  # noqa: F811
    """Where the Mistral DPO example starts: the demo's SFT model, which knows ChatML's tokens (here the tiny base
    with them added, standing in for `make demo`'s 80 epochs)."""
    target = in_demo_root / "demo_output" / "checkpoints" / "checkpoint-final"
    if not (target / "config.json").exists():
        from transformers import AutoModelForCausalLM, AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(in_demo_root / "demo_output" / "tiny-base")
        tokenizer.add_special_tokens({"additional_special_tokens": ["<|im_start|>", "<|im_end|>"]})
        model = AutoModelForCausalLM.from_pretrained(in_demo_root / "demo_output" / "tiny-base")
        model.resize_token_embeddings(len(tokenizer))
        model.save_pretrained(target)
        tokenizer.save_pretrained(target)
    return in_demo_root


@pytest.mark.slow
@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_every_example_validates(demo_sft_model, path):
    assert main(["validate", f"examples/axolotl/{path.name}"]) == 0


@pytest.mark.slow
def test_lora_1b_trains_as_shipped(in_demo_root):  # noqa: F811
    assert main(["sft", LORA_1B]) == 0
    output = in_demo_root / "outputs" / "lora-out"
    final = output / "checkpoint-final"
    adapter = json.loads((final / "adapter_config.json").read_text())
    assert (adapter["r"], adapter["lora_alpha"], adapter["lora_dropout"]) == (16, 32, 0.05)
    assert sorted(adapter["target_modules"]) == sorted(config_of(LORA_1B)["lora_target_modules"])
    assert not (final / "model.safetensors").exists()  # LoRA: the adapter only
    evaluations = [entry for entry in _state(output)["log_history"] if "eval_loss" in entry]
    assert evaluations[0]["step"] == 0  # evaluation at the start, as axolotl
    assert evaluations[-1]["eval_loss"] < evaluations[0]["eval_loss"]
    resolved = yaml.safe_load((final / "finetuning_config.yaml").read_text())
    assert resolved["batchsize_conf"]["total_train_batch_size"] == 4  # 2 per device × 2 accumulation × 1 process
    assert resolved["run_conf"]["special_tokens"]["pad_token"] == "<|end_of_text|>"
    assert resolved["sft_args"]["packing"]["strategy"] == "bfd"


@pytest.mark.slow
def test_the_converted_native_config_trains_the_same(in_demo_root, capsys):  # noqa: F811
    config = config_of(LORA_1B)
    config["output_dir"] = "outputs/direct"
    direct = in_demo_root / "direct.yml"
    direct.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    capsys.readouterr()
    assert main(["convert", str(direct)]) == 0
    native = yaml.safe_load(capsys.readouterr().out)
    native["training_args"]["output_dir"] = "outputs/converted"
    converted = in_demo_root / "converted.yaml"
    converted.write_text(yaml.safe_dump(native, sort_keys=False), encoding="utf-8")

    assert main(["sft", str(direct)]) == 0
    assert main(["sft", str(converted)]) == 0
    runs = [in_demo_root / "outputs" / name for name in ("direct", "converted")]
    assert _trained_curve(runs[0]) == _trained_curve(runs[1])
    assert len(_trained_curve(runs[0])) > 2
    first, second = (_adapter(run) for run in runs)
    assert first.keys() == second.keys() and all((first[name] == second[name]).all() for name in first)
    summaries = [(run / "summary.md").read_text() for run in runs]
    tokens = [next(line for line in summary.splitlines() if "tokens per epoch" in line) for summary in summaries]
    assert tokens[0] == tokens[1]  # the same tokens, and as many trained (labels)
