"""The sectioned dialect (seed 003): detection, the shipped examples, errors at the user's keys, unknown keys,
`convert`, and the docs' key table. (Key by key: test_sectioned_keys.py.)"""

from __future__ import annotations

import copy
import logging
from collections.abc import Mapping
from pathlib import Path

import pytest
import yaml

from finetuning.cli import main
from finetuning.config import load_any_config
from finetuning.config.dialects import Context, detect, key_table, translate
from finetuning.config.dialects import sectioned as dialect
from finetuning.config.loading import ConfigError
from tests.conftest import REPO, write_yaml

EXAMPLES = sorted((REPO / "examples" / "sectioned").glob("*.yaml"))
FULL = REPO / "examples" / "sectioned" / "config.yaml"
CPU = Context()
GPU = Context(cuda=True, flash_attn=True)
BASE = {
    "model": {"base_model": "m"},
    "fine_tuning": {"method": "lora"},
    "dataset": {"format": "alpaca", "train_path": "d.jsonl"},
}


def config(**sections) -> dict:
    """BASE with its sections updated key by key (a section None removes it)."""
    data = copy.deepcopy(BASE)
    for name, section in sections.items():
        if section is None:
            data.pop(name, None)
        elif isinstance(section, Mapping):
            data[name] = {**data.get(name, {}), **section}
        else:
            data[name] = section
    return data


def native_of(data: dict, context: Context = CPU) -> dict:
    translation = translate(data, "sectioned", context)
    assert translation.problems == []
    return translation.native


def problems_of(data: dict, context: Context = CPU) -> list[str]:
    return translate(data, "sectioned", context).problems


def notices_of(data: dict, context: Context = CPU) -> list[str]:
    return translate(data, "sectioned", context).notices


def write(tmp_path: Path, data: dict) -> Path:
    return write_yaml(tmp_path / "sectioned.yaml", data)


# --- detection -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("section", ["fine_tuning", "training", "dataset"])
def test_model_with_one_more_section_is_sectioned(section):
    assert detect({"model": {"base_model": "m"}, section: {}}) == "sectioned"


@pytest.mark.parametrize(
    "data",
    [
        {"model": "m", "train_parameters": {}, "dataset": {}},  # VectorLM
        {"model": {"base_model": "m"}, "base_model": "m", "training": {}},  # axolotl's base_model at top level
    ],
    ids=["vectorlm", "axolotl"],
)
def test_other_dialects_with_a_model_key_are_not_sectioned(data):
    assert not dialect.matches(data)


def test_model_alone_is_no_dialect():
    with pytest.raises(ConfigError, match="sectioned: model with fine_tuning / training / dataset"):
        detect({"model": {"base_model": "m"}})


# --- the shipped examples ------------------------------------------------------------------------------------------


def test_the_seeds_example_and_its_three_templates_are_shipped():
    assert [p.name for p in EXAMPLES] == ["config.yaml", "multi-gpu-full.yaml", "qlora-16gb.yaml", "spectrum.yaml"]


def _leaves(data: Mapping, prefix: str = "") -> list[str]:
    paths = []
    for name, value in data.items():
        path = f"{prefix}{name}"
        paths += _leaves(value, f"{path}.") if isinstance(value, Mapping) else [path]
    return paths


def test_every_key_of_the_seeds_example_has_a_fate_in_the_table():
    """The full example has every key of the seed's tables: each is in the key table, and translates cleanly."""
    table = {key.path for key in dialect.KEYS}
    leaves = _leaves(yaml.safe_load(FULL.read_text()))
    assert len(leaves) == 54  # 7 model, 13 fine_tuning, 12 training, 6 dataset, 4 distributed, 7 output, 5 evaluation
    assert [path for path in leaves if path not in table] == []
    assert problems_of(yaml.safe_load(FULL.read_text())) == []


def test_the_full_example_as_native():
    native = native_of(yaml.safe_load(FULL.read_text()))
    assert native["peft_conf"]["peft_type"] == "LORA" and native["quant_conf"]["load_in_4bit"] is True
    assert native["batchsize_conf"] == {
        "max_per_device_train_batch_size": 1,
        "total_train_batch_size": 16,
        "per_device_eval_batch_size": 8,
    }
    assert [b["type"] for b in native["eval_conf"]["benchmarks"]] == ["lm_eval", "exact_match", "human_eval"]
    assert native["training_args"]["eval_strategy"] == "steps" and native["training_args"]["eval_steps"] == 100
    assert "hub_model_id" not in native["training_args"]  # null sets nothing
    assert "spectrum" not in native  # method qlora: the spectrum section is not used (notices)


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_examples_load_as_native_configs(path, monkeypatch):
    monkeypatch.chdir(REPO)
    config = load_any_config(path)
    assert config.run_conf.model == "demo_output/tiny-llama3"


def test_the_spectrum_template_loads_unquantized_with_a_notice():
    data = yaml.safe_load((REPO / "examples" / "sectioned" / "spectrum.yaml").read_text())
    native = native_of(data)
    assert native["spectrum"] == {"top_percent": 50.0, "layers": "auto"}
    assert native["peft_conf"] == {"peft_type": "NO_PEFT"} and "quant_conf" not in native
    assert any(n.startswith("model.load_in_4bit: not used with method spectrum") for n in notices_of(data))


# --- errors at the user's keys -------------------------------------------------------------------------------------


def test_native_problems_are_reported_at_the_users_keys(tmp_path, capsys):
    data = config(training={"learning_rate": "fast", "lr_scheduler_type": "cosinee"}, output={"logging_steps": 0})
    assert main(["validate", str(write(tmp_path, data))]) == 2
    err = capsys.readouterr().err
    assert "training.learning_rate: must be a number, got 'fast'" in err
    assert "output.logging_steps: must be at least 1, got 0" in err
    assert "training.lr_scheduler_type: " in err and "cosinee" in err
    assert "training_args." not in err


def test_unknown_keys_have_a_did_you_mean():
    problems = problems_of(config(training={"learning_rat": 1e-4}, fine_tuning={"lora": {"rank": 8}}, extra={}))
    assert "training.learning_rat: unknown key; did you mean 'learning_rate'?" in problems
    assert any(p.startswith("fine_tuning.lora.rank: unknown key") for p in problems)
    assert any(p.startswith("extra: unknown key") for p in problems)


def test_required_keys():
    problems = problems_of({"model": {"tokenizer": "t"}, "fine_tuning": {}, "dataset": {}})
    assert problems == [
        "model.base_model: required key is missing (a Hugging Face model id or a local path)",
        "fine_tuning.method: required key is missing (one of full, lora, qlora, spectrum)",
        "dataset.train_path: required key is missing (the training data: a JSONL file)",
    ]


def test_a_section_that_is_no_mapping():
    assert "training: must be a mapping of keys, got 3" in problems_of(config(training=3))


# --- convert -------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["qlora-16gb.yaml", "spectrum.yaml"])
def test_convert_prints_native_yaml_that_loads_as_the_same_config(tmp_path, capsys, caplog, monkeypatch, name):
    monkeypatch.chdir(REPO)
    path = Path("examples") / "sectioned" / name
    assert main(["convert", str(path)]) == 0
    printed = capsys.readouterr().out
    assert printed.startswith(f"# {path} (sectioned dialect) as a native config, translated for 1 process(es)")
    converted = tmp_path / "native.yaml"
    converted.write_text(printed, encoding="utf-8")
    assert load_any_config(converted).model_dump() == load_any_config(path).model_dump()
    assert [r for r in caplog.records if r.levelno == logging.WARNING]  # the notices (sdpa, fp32, ...)


# --- docs ----------------------------------------------------------------------------------------------------------


def test_docs_table_is_the_dialects_key_table():
    from finetuning.config.dialects.docs import with_table

    page = (REPO / "docs" / "dialects" / "sectioned.md").read_text(encoding="utf-8")
    assert page == with_table(page, "sectioned"), "run: python -m finetuning.config.dialects.docs"
    for key in dialect.KEYS:
        assert key.section or f"`{key.path}`" in key_table("sectioned")


def test_readme_mentions_the_sectioned_dialect():
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert "docs/dialects/sectioned.md" in readme and "examples/sectioned/" in readme


def test_dotted_overrides_speak_the_sectioned_dialect(capsys, monkeypatch):
    monkeypatch.chdir(REPO)
    args = ["convert", "examples/sectioned/qlora-16gb.yaml", "--training.learning_rate", "1e-4"]
    assert main([*args, "--fine_tuning.lora.r", "8"]) == 0
    native = yaml.safe_load(capsys.readouterr().out)
    assert native["training_args"]["learning_rate"] == 1e-4 and native["peft_conf"]["peft_kwargs"]["r"] == 8


def test_convert_of_a_sectioned_config_loads_no_torch():
    from finetuning.config.trainer_fields import trainer_fields
    from tests.test_startup import probe

    trainer_fields("sft")
    result, stderr = probe("convert", str(REPO / "examples" / "sectioned" / "multi-gpu-full.yaml"))
    assert result == {"code": 0, "heavy": []}, stderr
    assert "config dialect: sectioned" in stderr
