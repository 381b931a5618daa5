"""model_args → from_pretrained keywords, and the model-path pre-check."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from finetuning.cli import main
from finetuning.config.peft import PretrainedPeftConfig
from finetuning.config.quant import NoQuantizationConfig
from finetuning.config.run import RunConfig
from finetuning.data.templates import TemplateError
from finetuning.model.loading import (
    ModelSetupError,
    adapter_source_problems,
    check_model_sources,
    from_pretrained_kwargs,
    load_model,
    model_source_problems,
)
from finetuning.model.tokenizer import load_tokenizer
from tests.conftest import deep_update, sft_config, write_yaml


def test_model_args_are_translated_for_transformers_5():
    run_conf = RunConfig(
        model="m",
        model_args={
            "torch_dtype": "bfloat16",
            "attn_implementation": "sdpa",
            "resume_download": True,
            "revision": "v1",
        },
    )
    kwargs = from_pretrained_kwargs(run_conf.model_args, num_processes=1)
    assert kwargs["dtype"] == "bfloat16" and "torch_dtype" not in kwargs
    assert kwargs["attn_implementation"] == "sdpa" and kwargs["revision"] == "v1"
    assert "resume_download" not in kwargs  # no longer a from_pretrained option
    assert kwargs["trust_remote_code"] is False  # safe default, always explicit
    assert "device_map" not in kwargs  # CPU: no device map


def test_extra_model_args_pass_through():
    run_conf = RunConfig(model="m", model_args={"rope_scaling": {"type": "linear", "factor": 2.0}})
    assert from_pretrained_kwargs(run_conf.model_args, 1)["rope_scaling"] == {"type": "linear", "factor": 2.0}


def test_missing_local_model_path_is_reported_but_hub_ids_are_not(tmp_path, monkeypatch):
    assert model_source_problems(str(tmp_path / "nope")) == [
        f"run_conf.model: {tmp_path / 'nope'}: not found (a local path; hub ids look like 'org/name')"
    ]
    assert model_source_problems(str(tmp_path)) == []
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")  # online, a hub id is fetched when it loads (nothing is fetched here)
    assert model_source_problems("meta-llama/Llama-3.1-8B") == []
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # offline, only what the local cache holds
    [problem] = model_source_problems("meta-llama/Llama-3.1-8B")
    assert "HF_HUB_OFFLINE is set" in problem


# --- safe defaults: no remote code, safetensors only, paths named absolute -----------------------------------------


def pickle_only_copy(model_dir: Path, target: Path) -> Path:
    """The model with its weights in pytorch_model.bin only (what save_pretrained(safe_serialization=False) wrote
    before transformers 5, which always saves safetensors)."""
    import torch
    from transformers import AutoModelForCausalLM

    shutil.copytree(model_dir, target, ignore=shutil.ignore_patterns("*.safetensors"))
    torch.save(AutoModelForCausalLM.from_pretrained(model_dir).state_dict(), target / "pytorch_model.bin")
    return target


def test_safe_defaults_are_always_passed_explicitly():
    kwargs = from_pretrained_kwargs(RunConfig(model="m").model_args, 1)
    assert kwargs["trust_remote_code"] is False and kwargs["use_safetensors"] is True
    opted_in = RunConfig(model="m", model_args={"trust_remote_code": True, "use_safetensors": False}).model_args
    kwargs = from_pretrained_kwargs(opted_in, 1)
    assert kwargs["trust_remote_code"] is True and kwargs["use_safetensors"] is False


@pytest.mark.parametrize("trust", [False, True])
def test_model_and_tokenizer_loads_say_whether_remote_code_is_trusted(monkeypatch, trust):
    import transformers

    calls = {}

    def capture(name):
        def from_pretrained(source, **kwargs):
            calls[name] = kwargs
            return object()

        return from_pretrained

    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", capture("model"))
    monkeypatch.setattr(transformers.AutoTokenizer, "from_pretrained", capture("tokenizer"))
    run_conf = RunConfig(model="org/model", model_args={"trust_remote_code": trust})
    load_model(run_conf, NoQuantizationConfig(), 1)
    load_tokenizer(run_conf)
    assert calls["model"]["trust_remote_code"] is trust and calls["tokenizer"]["trust_remote_code"] is trust
    assert calls["model"]["use_safetensors"] is True


@pytest.mark.slow
def test_pickle_only_model_is_refused_unless_allowed(tmp_path, tiny_model_dir, capsys):
    pickled = pickle_only_copy(tiny_model_dir, tmp_path / "pickled")
    config = sft_config(tmp_path, pickled, training_args={"max_steps": 1})
    assert main(["sft", str(write_yaml(tmp_path / "c.yaml", config))]) == 2
    error = capsys.readouterr().err
    assert f"run_conf.model: {pickled}: only pickle weights (pytorch_model.bin)" in error
    assert "set `run_conf.model_args.use_safetensors: false` to load them anyway" in error
    assert not (tmp_path / "out").exists()
    with pytest.raises(ModelSetupError, match="use_safetensors: false"):  # also when load_model is called directly
        load_model(RunConfig(model=str(pickled)), NoQuantizationConfig(), 1)

    allowed = deep_update(config, {"run_conf": {"model_args": {"use_safetensors": False}}})
    assert main(["sft", str(write_yaml(tmp_path / "c.yaml", allowed))]) == 0
    final = tmp_path / "out" / "checkpoint-final"
    assert (final / "model.safetensors").is_file()  # saved as safetensors whatever it was loaded from
    assert not [p.name for p in final.glob("*.bin") if p.name != "training_args.bin"]


def test_hub_model_without_safetensors_gets_the_hint(monkeypatch):
    import transformers

    def refuse(source, **kwargs):
        raise OSError("org/model does not appear to have a file named model.safetensors")

    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", refuse)
    with pytest.raises(ModelSetupError) as caught:
        load_model(RunConfig(model="org/model"), NoQuantizationConfig(), 1)
    assert caught.value.problems[0].startswith("run_conf.model: could not load a model from 'org/model': ")
    assert caught.value.problems[0].endswith("set `run_conf.model_args.use_safetensors: false` to allow them")


def test_pickle_only_adapter_is_refused_unless_allowed(tmp_path, tiny_model_dir):
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text("{}")
    (adapter / "adapter_model.bin").write_bytes(b"")
    peft_conf = PretrainedPeftConfig(peft_type="PRETRAINED_PEFT", name_or_path=str(adapter))
    assert check_model_sources(RunConfig(model=str(tiny_model_dir)), peft_conf) == [
        f"peft_conf.name_or_path: {adapter}: only pickle weights (adapter_model.bin), which can run code when loaded; "
        "convert them to safetensors, or set `run_conf.model_args.use_safetensors: false` to load them anyway"
    ]
    allowed = RunConfig(model=str(tiny_model_dir), model_args={"use_safetensors": False})
    assert check_model_sources(allowed, peft_conf) == []


def test_relative_paths_resolve_against_the_working_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "empty").mkdir()
    assert model_source_problems("./models/m") == [
        f"run_conf.model: {tmp_path / 'models/m'}: not found (a local path; hub ids look like 'org/name')"
    ]
    assert adapter_source_problems("empty") == [
        f"peft_conf.name_or_path: {tmp_path / 'empty'}: no adapter_config.json there (not a PEFT adapter directory)"
    ]
    with pytest.raises(ModelSetupError, match=f"run_conf.model: could not load a model from {tmp_path / 'empty'}: "):
        load_model(RunConfig(model="empty"), NoQuantizationConfig(), 1)
    with pytest.raises(
        TemplateError, match=f"run_conf.tokenizer: could not load a tokenizer from {tmp_path / 'empty'}: "
    ):
        load_tokenizer(RunConfig(model="m", tokenizer="empty"))
