"""model_args → from_pretrained keywords, and the model-path pre-check."""

from __future__ import annotations

from finetuning.config.run import RunConfig
from finetuning.model.loading import from_pretrained_kwargs, model_source_problem


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


def test_missing_local_model_path_is_reported_but_hub_ids_are_not(tmp_path):
    assert model_source_problem(str(tmp_path / "nope")) == f"run_conf.model: {tmp_path / 'nope'}: not found " + (
        "(a local path; hub ids look like 'org/name')"
    )
    assert model_source_problem("meta-llama/Llama-3.1-8B") is None
    assert model_source_problem(str(tmp_path)) is None
