"""The sectioned framework's templates (examples/sectioned: paths made local) train on the demo's tiny model as
shipped: the QLoRA one trains a LoRA adapter on the 4-bit model, the Spectrum one trains only the matrices its SNR
selection picked. Every shipped example validates."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from finetuning.cli import main
from tests.config.dialects.test_sectioned import EXAMPLES
from tests.test_examples import demo_root, in_demo_root  # noqa: F401 (fixtures)


def _state(output: Path) -> dict:
    return json.loads(next(output.glob("checkpoint-*/trainer_state.json")).read_text())


def _weights(path: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(path))


@pytest.mark.slow
@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_every_example_validates(in_demo_root, path):  # noqa: F811
    assert main(["validate", f"examples/sectioned/{path.name}"]) == 0


@pytest.mark.slow
def test_qlora_template_trains_as_shipped(in_demo_root):  # noqa: F811
    assert main(["sft", "examples/sectioned/qlora-16gb.yaml"]) == 0
    output = in_demo_root / "demo_output" / "sectioned" / "qlora-16gb"
    final = output / "checkpoint-final"
    adapter = json.loads((final / "adapter_config.json").read_text())
    assert (adapter["r"], adapter["lora_alpha"], adapter["lora_dropout"]) == (16, 32, 0.05)
    assert sorted(adapter["target_modules"]) == ["k_proj", "o_proj", "q_proj", "v_proj"]
    assert not (final / "model.safetensors").exists()  # the adapter only
    resolved = yaml.safe_load((final / "finetuning_config.yaml").read_text())
    assert resolved["quant_conf"]["load_in_4bit"] is True
    assert resolved["batchsize_conf"]["total_train_batch_size"] == 16  # 1 per device × 16 accumulation × 1 process
    assert resolved["sft_args"]["train_on_completions_only"] is True
    assert _state(output)["global_step"] == 21  # 3 epochs of ceil(100 / 16) = 7 steps
    lora_b = {name: w for name, w in _weights(final / "adapter_model.safetensors").items() if "lora_B" in name}
    layers = json.loads((in_demo_root / "demo_output" / "tiny-llama3" / "config.json").read_text())["num_hidden_layers"]
    assert len(lora_b) == 4 * layers  # the four target modules of each layer
    assert all(w.abs().sum() > 0 for w in lora_b.values())  # B starts at zero: every adapter was trained


@pytest.mark.slow
def test_spectrum_template_trains_only_the_selected_matrices(in_demo_root):  # noqa: F811
    assert main(["sft", "examples/sectioned/spectrum.yaml"]) == 0
    output = in_demo_root / "demo_output" / "sectioned" / "spectrum"
    selection = yaml.safe_load((output / "spectrum.yaml").read_text())
    assert selection["settings"]["top_percent"] == 50.0  # snr_threshold 0.5
    assert selection["settings"]["layers"] == "auto"
    trained = {row["parameter"] for row in selection["selection"] if row["trained"]}
    frozen = {row["parameter"] for row in selection["selection"] if not row["trained"]}
    assert trained and frozen
    resolved = yaml.safe_load((output / "checkpoint-final" / "finetuning_config.yaml").read_text())
    assert resolved["peft_conf"]["peft_type"] == "NO_PEFT" and resolved["quant_conf"]["quantization_type"] != (
        "bits-and-bytes"
    )  # load_in_4bit is not used with spectrum
    before = _weights(in_demo_root / "demo_output" / "tiny-llama3" / "model.safetensors")
    after = _weights(output / "checkpoint-final" / "model.safetensors")
    changed = {name.removesuffix(".weight") for name in before if not before[name].equal(after[name])}
    assert {name.removesuffix(".weight") for name in trained} == changed
