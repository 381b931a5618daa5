"""Spectrum (`spectrum`, model/spectrum.py): the SNR of a matrix equals the reference method's formula computed by
hand; matrices given planted low-rank structure are the ones selected; a training run changes exactly the selected
parameters; a layers list selects those layers; spectrum.yaml and `finetuning spectrum CONFIG` show the selection;
and the combinations it cannot train are config errors."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch
import yaml

from finetuning.cli import main
from finetuning.config.loading import ConfigError, validate_config
from finetuning.config.spectrum import SpectrumConfig
from finetuning.errors import USER_ERROR_EXIT
from finetuning.model.loading import ModelSetupError
from finetuning.model.spectrum import SPECTRUM_FILE, matrix_snr, select_parameters, unfrozen_patterns
from tests.conftest import sft_config, write_yaml

TYPES = (
    "self_attn.q_proj",
    "self_attn.k_proj",
    "self_attn.v_proj",
    "self_attn.o_proj",
    "mlp.gate_proj",
    "mlp.up_proj",
    "mlp.down_proj",
)


def planted_layer(module_type: str) -> int:
    """Which of the tiny model's two layers gets the low-rank (high SNR) matrix of this type."""
    return TYPES.index(module_type) % 2


def hand_snr(matrix: np.ndarray) -> float:
    """peer-semantics.md §5 in numpy: singular values, σ = IQR/1.349, τ = σ(1+√β), Σ signal / Σ noise / max."""
    s = np.linalg.svd(matrix.astype(np.float64), compute_uv=False)
    q75, q25 = np.percentile(s, [75, 25])
    n, m = matrix.shape
    tau = (q75 - q25) / 1.349 * (1 + np.sqrt(min(n, m) / max(n, m)))
    noise = s[s <= tau].sum() if (s <= tau).any() else 1.0
    return float(s[s > tau].sum() / noise / s.max())


def low_rank(shape: tuple[int, int], generator: torch.Generator, scale: float) -> torch.Tensor:
    """Rank 4 of norm comparable to the random init, plus a little noise: a strong signal above the noise edge."""
    u = torch.randn(shape[0], 4, generator=generator)
    v = torch.randn(4, shape[1], generator=generator)
    signal = u @ v
    signal *= scale / signal.std()
    return signal + 1e-6 * torch.randn(*shape, generator=generator)


@pytest.fixture(scope="module")
def planted_model_dir(tiny_model_dir, tmp_path_factory):
    """The tiny model with every module type's matrix in `planted_layer` made low-rank, saved as a model dir."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for module_type in TYPES:
            weight = model.get_parameter(f"model.layers.{planted_layer(module_type)}.{module_type}.weight")
            weight.copy_(low_rank(tuple(weight.shape), generator, float(weight.std())))
    out = tmp_path_factory.mktemp("planted") / "model"
    model.save_pretrained(out)
    for item in tiny_model_dir.iterdir():  # the tokenizer files
        if "token" in item.name or item.name.endswith(".jinja"):
            shutil.copy(item, out / item.name)
    return out


@pytest.fixture(scope="module")
def planted_model(planted_model_dir):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(planted_model_dir)


@pytest.mark.parametrize("shape", [(48, 48), (32, 80), (80, 32)])
def test_snr_matches_a_hand_computation(shape):
    generator = torch.Generator().manual_seed(1)
    matrix = torch.randn(*shape, generator=generator) * 0.02
    matrix[:, :3] += 0.3  # a structured part: some values above the noise edge, some below
    assert matrix_snr(matrix) == pytest.approx(hand_snr(matrix.numpy()), rel=1e-4)


def test_snr_without_noise_counts_the_noise_as_one():
    matrix = torch.diag(torch.tensor([4.0, 2.0, 1.0, 1.0]))  # IQR 1.5: τ 2.22 → 4 is signal, the rest noise
    assert matrix_snr(matrix) == pytest.approx(4.0 / 4.0 / 4.0)
    one_value = torch.ones(1, 1) * 3.0  # IQR 0: τ 0, everything signal, noise empty → 1
    assert matrix_snr(one_value) == pytest.approx(3.0 / 1.0 / 3.0)


def test_planted_low_rank_matrices_are_selected(planted_model):
    rows = select_parameters(planted_model, SpectrumConfig(top_percent=50))
    assert {row.module_type for row in rows} == set(TYPES)
    trained = {(row.module_type, row.layer) for row in rows if row.trained}
    assert trained == {(module_type, planted_layer(module_type)) for module_type in TYPES}  # one of two each
    for row in rows:
        other = next(r for r in rows if r.module_type == row.module_type and r is not row)
        assert (row.snr > other.snr) == row.trained


def test_top_percent_keeps_at_least_one_and_module_types_narrow(planted_model):
    rows = select_parameters(planted_model, SpectrumConfig(top_percent=1, module_types=["mlp.down_proj"]))
    assert [(row.layer, row.trained) for row in rows] == [(0, True), (1, False)]  # int(2 x 1%) = 0 → 1
    everything = select_parameters(planted_model, SpectrumConfig(top_percent=100, module_types=["mlp.up_proj"]))
    assert all(row.trained for row in everything) and len(everything) == 2


def test_layers_list_selects_those_layers_without_snr(planted_model):
    spectrum = SpectrumConfig(layers=[1], module_types=["self_attn.q_proj", "mlp.up_proj"], train_lm_head=True)
    rows = select_parameters(planted_model, spectrum)
    assert unfrozen_patterns(rows) == [
        "^model.layers.1.self_attn.q_proj.weight$",
        "^model.layers.1.mlp.up_proj.weight$",
        "^lm_head.weight$",
    ]
    assert all(row.snr is None for row in rows)


def test_unknown_module_type_and_layer_are_errors_at_the_key(planted_model):
    with pytest.raises(ModelSetupError) as caught:
        select_parameters(planted_model, SpectrumConfig(module_types=["self_attn.q_prj"], layers=[0, 5]))
    problems = caught.value.problems
    assert (
        "spectrum.module_types: 'self_attn.q_prj'" in problems[0] and "did you mean 'self_attn.q_proj'" in problems[0]
    )
    assert problems[1] == "spectrum.layers: layer 5 does not exist; this model has layers 0 to 1"


def spectrum_config(tmp_path, model_dir, **spectrum):
    return sft_config(tmp_path, model_dir, spectrum=spectrum, training_args={"max_steps": 3})


@pytest.mark.parametrize("checkpointing", [False, pytest.param(True, marks=pytest.mark.slow)])
def test_training_changes_exactly_the_selected_parameters(planted_model_dir, planted_model, tmp_path, checkpointing):
    """With gradient checkpointing too: the frozen embeddings must not cut the gradients off from the layers."""
    from transformers import AutoModelForCausalLM

    from finetuning.sft import run_sft

    config = spectrum_config(tmp_path, planted_model_dir, top_percent=50, train_lm_head=True)
    if checkpointing:  # reentrant checkpointing passes gradients only to inputs that require them
        config["training_args"].update(
            gradient_checkpointing=True, gradient_checkpointing_kwargs={"use_reentrant": True}
        )
    result = run_sft(validate_config(config))
    document = yaml.safe_load((tmp_path / "out" / SPECTRUM_FILE).read_text())
    selected = {pattern.strip("^$") for pattern in document["unfrozen_parameters"]}
    expected = {f"model.layers.{planted_layer(t)}.{t}.weight" for t in TYPES} | {"lm_head.weight"}
    assert selected == expected
    trained = AutoModelForCausalLM.from_pretrained(result.final_dir).state_dict()
    # the chat template's new tokens grew the vocabulary: the original rows are compared (the new ones start at the
    # mean embedding and, embeddings frozen, stay there)
    changed = {
        name
        for name, value in planted_model.state_dict().items()
        if not torch.equal(value, trained[name][: value.shape[0]])
    }
    assert changed == expected  # every selected one moved; every other one bit-identical


def test_spectrum_yaml_holds_the_patterns_settings_and_table(planted_model_dir, tmp_path):
    from transformers import AutoModelForCausalLM

    from finetuning.model.spectrum import apply_spectrum

    model = AutoModelForCausalLM.from_pretrained(planted_model_dir)
    spectrum = SpectrumConfig(module_types=["mlp.down_proj"])
    rows = apply_spectrum(model, spectrum, tmp_path)
    document = yaml.safe_load((tmp_path / SPECTRUM_FILE).read_text())
    assert document["unfrozen_parameters"] == ["^model.layers.0.mlp.down_proj.weight$"]  # planted_layer
    assert document["settings"] == {
        "top_percent": 50.0,
        "module_types": ["mlp.down_proj"],
        "layers": "auto",
        "train_embeddings": False,
        "train_lm_head": False,
    }
    assert [(r["layer"], r["trained"]) for r in document["selection"]] == [(0, True), (1, False)]
    assert document["selection"][1]["snr"] == pytest.approx(rows[1].snr, rel=1e-5)
    assert [name for name, p in model.named_parameters() if p.requires_grad] == ["model.layers.0.mlp.down_proj.weight"]


def test_cli_prints_the_selection_without_training(planted_model_dir, tmp_path, capsys):
    config = write_yaml(tmp_path / "c.yaml", spectrum_config(tmp_path, planted_model_dir, train_embeddings=True))
    assert main(["spectrum", str(config)]) == 0
    out, err = capsys.readouterr()
    document = yaml.safe_load(out)
    assert "Spectrum selection" in err and "mlp.down_proj" in err
    assert document["unfrozen_parameters"][-1] == "^model.embed_tokens.weight$"
    assert len(document["unfrozen_parameters"]) == len(TYPES) + 1
    row = next(r for r in document["selection"] if r["parameter"] == "model.layers.1.self_attn.k_proj.weight")
    assert row == {
        "parameter": "model.layers.1.self_attn.k_proj.weight",
        "module_type": "self_attn.k_proj",
        "layer": 1,
        "snr": pytest.approx(row["snr"]),
        "trained": True,
    }
    assert isinstance(row["snr"], float) and document["settings"]["top_percent"] == 50.0
    assert not (tmp_path / "out").exists()  # nothing trained, nothing written


def test_cli_spectrum_at_an_unknown_type_is_a_user_error(planted_model_dir, tmp_path, capsys):
    config = spectrum_config(tmp_path, planted_model_dir, module_types=["mlp.nope"])
    assert main(["spectrum", str(write_yaml(tmp_path / "c.yaml", config))]) == USER_ERROR_EXIT
    assert "spectrum.module_types: 'mlp.nope'" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"peft_conf": {"peft_type": "LORA", "peft_kwargs": {"r": 4}}}, "spectrum: needs full fine-tuning"),
        (
            {
                "peft_conf": {"peft_type": "LORA", "peft_kwargs": {"r": 4}},
                "quant_conf": {"quantization_type": "bits-and-bytes", "load_in_4bit": True},
            },
            "quant_conf loads a quantized model",
        ),
        ({"spectrum": {"top_percent": 0}}, "top_percent"),
        ({"spectrum": {"top_percent": 120}}, "top_percent"),
        ({"spectrum": {"layers": [1, 1]}}, "lists a layer twice"),
        ({"spectrum": {"layers": "all"}}, "layers"),
        ({"spectrum": {"module_types": []}}, "at least one module type"),
        ({"spectrum": {"top_procent": 10}}, "top_procent"),
    ],
)
def test_config_errors(tmp_path, tiny_model_dir, changes, message):
    config = sft_config(tmp_path, tiny_model_dir, **{"spectrum": {}, **changes})
    with pytest.raises(ConfigError) as caught:
        validate_config(config)
    assert message in str(caught.value)


def test_a_4bit_weight_is_measured_dequantized():
    bnb = pytest.importorskip("bitsandbytes")
    import bitsandbytes.functional as bnb_functional

    matrix = torch.randn(64, 128, generator=torch.Generator().manual_seed(2)) * 0.02
    packed, state = bnb_functional.quantize_4bit(matrix, quant_type="nf4")
    weight = bnb.nn.Params4bit(packed, requires_grad=False, quant_state=state, quant_type="nf4", bnb_quantized=True)
    dequantized = bnb_functional.dequantize_4bit(packed, state)
    assert matrix_snr(weight) == pytest.approx(hand_snr(dequantized.numpy()), rel=1e-4)


def test_cli_on_a_qlora_config_without_spectrum_shows_the_defaults(planted_model_dir, tmp_path, capsys, caplog):
    config = sft_config(
        tmp_path,
        planted_model_dir,
        peft_conf={"peft_type": "LORA", "peft_kwargs": {"r": 4}},
        quant_conf={"quantization_type": "bits-and-bytes", "load_in_4bit": True},
    )
    assert main(["spectrum", str(write_yaml(tmp_path / "c.yaml", config))]) == 0
    assert "no spectrum section" in caplog.text
    out = capsys.readouterr().out
    assert len(yaml.safe_load(out)["unfrozen_parameters"]) == len(TYPES)  # one of two layers per type
