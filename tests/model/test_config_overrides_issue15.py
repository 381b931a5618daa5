"""`run_conf.config_overrides` (model/config_overrides.py): a rope_scaling override on the tiny Llama reaches the
loaded model (merged into transformers 5's rope_parameters, rope theta kept, the rotary frequencies scaled) without
losing the model_args that are config settings; wrong keys are pre-flight problems at their keys."""

from __future__ import annotations

import pytest
import torch

from finetuning.cli import main
from finetuning.config.quant import NoQuantizationConfig
from finetuning.config.run import RunConfig
from finetuning.model.loading import ModelSetupError, check_model_sources, load_model
from tests.conftest import sft_config, write_yaml

LINEAR_2 = {"rope_scaling": {"type": "linear", "factor": 2.0}}


def loaded(model_dir, **run_conf):
    return load_model(RunConfig(model=str(model_dir), **run_conf), NoQuantizationConfig(), num_processes=1)


def test_a_rope_scaling_override_reaches_the_loaded_model(tiny_model_dir):
    base = loaded(tiny_model_dir)
    scaled = loaded(
        tiny_model_dir,
        config_overrides={**LINEAR_2, "max_position_embeddings": 4096},
        model_args={"use_cache": False},  # a config setting passed as a from_pretrained keyword: still applied
    )
    theta = base.config.rope_parameters["rope_theta"]
    assert scaled.config.rope_parameters == {"rope_type": "linear", "factor": 2.0, "rope_theta": theta}
    assert scaled.config.max_position_embeddings == 4096 and scaled.config.use_cache is False
    # linear scaling: every rotary frequency halved
    assert torch.allclose(scaled.model.rotary_emb.inv_freq, base.model.rotary_emb.inv_freq / 2)


def test_a_rope_mapping_in_model_args_is_merged_too(tiny_model_dir):
    # from_pretrained would set it as it is, dropping rope_theta: the model would not even build
    scaled = loaded(tiny_model_dir, model_args=LINEAR_2)
    assert scaled.config.rope_parameters["rope_type"] == "linear" and scaled.config.rope_parameters["rope_theta"]


@pytest.mark.parametrize(
    ("overrides", "problem"),
    [
        (
            {"num_hiden_layers": 1},
            "run_conf.config_overrides.num_hiden_layers: not a setting of this model's config "
            "(LlamaConfig); did you mean 'num_hidden_layers'?",
        ),
        (
            {"rope_scaling": {"type": "lineer", "factor": 2.0}},
            "run_conf.config_overrides.rope_scaling: unknown rope_type 'lineer'; did you mean 'linear'?",
        ),
        (
            {"rope_scaling": {"type": "linear"}},
            "run_conf.config_overrides.rope_scaling: Missing required keys in "
            "`rope_parameters` for 'rope_type'='linear': {'factor'}",
        ),
        ({"to_json_file": "x"}, "run_conf.config_overrides.to_json_file: not a setting of this model's config"),
    ],
)
def test_wrong_overrides_are_problems_before_the_model_loads(tiny_model_dir, overrides, problem):
    run_conf = RunConfig(model=str(tiny_model_dir), config_overrides=overrides)
    problems = check_model_sources(run_conf)
    assert len(problems) == 1 and problems[0].startswith(problem)
    with pytest.raises(ModelSetupError):
        load_model(run_conf, NoQuantizationConfig(), num_processes=1)


def test_validate_reports_them_and_a_full_fine_tune_saves_the_changed_config(tmp_path, tiny_model_dir, capsys):
    config = sft_config(tmp_path, tiny_model_dir, run_conf={"config_overrides": {"rope_scalling": {}}})
    assert main(["validate", str(write_yaml(tmp_path / "bad.yaml", config))]) == 2
    assert "run_conf.config_overrides.rope_scalling: not a setting" in capsys.readouterr().err

    config = sft_config(
        tmp_path, tiny_model_dir, run_conf={"config_overrides": LINEAR_2}, training_args={"max_steps": 2}
    )
    assert main(["sft", str(write_yaml(tmp_path / "good.yaml", config))]) == 0
    from transformers import AutoConfig

    saved = AutoConfig.from_pretrained(tmp_path / "out" / "checkpoint-final")
    assert saved.rope_parameters["rope_type"] == "linear" and saved.rope_parameters["factor"] == 2.0
