"""FSDP2 on 2 CPU processes, where accelerate alone would silently train DDP: the run really shards (each process
holds half of every weight, read from the parameters' DTensor local shapes), its losses equal DDP's, a sharded
checkpoint resumes bit-identically, the final model is one consolidated model.safetensors that plain transformers
loads, and LoRA trains under it. Then the config side, without torchrun: the `fsdp` words and `fsdp_config` keys
checked against the installed transformers, the dialects' sharding keys, QLoRA's storage dtype."""

from __future__ import annotations

import json
import re
import shutil

import pytest
import torch
from safetensors.torch import load_file

from finetuning.errors import UserError
from finetuning.train.fsdp import accepted_config_keys, fsdp_arguments
from tests.conftest import sft_config, write_yaml
from tests.distributed.launch import logged_losses, torchrun

BATCH = {"total_train_batch_size": 8, "max_per_device_train_batch_size": 4}  # 2 processes x 4, no accumulation
SHARDED = {
    "fsdp": "full_shard auto_wrap",
    "fsdp_config": {"fsdp_state_dict_type": "SHARDED_STATE_DICT"},  # axolotl's spelling: the prefix is dropped
    "save_strategy": "steps",
    "save_steps": 2,
}
LORA = {
    "peft_type": "LORA",
    "task_type": "CAUSAL_LM",
    "peft_kwargs": {"r": 8, "lora_alpha": 16, "target_modules": ["q_proj", "v_proj"]},
}
SHARDING_LINE = re.compile(
    r"FSDP2: sharded (\d+) parameters over (\d+) processes; this process holds (\d+) of their (\d+) elements "
    r"\(([\w.]+): local \((\d+), (\d+)\) of \((\d+), (\d+)\)\); computed in float32"
)


def train(directory, model_dir, **changes):
    """One `finetuning sft` under torchrun on 2 CPU processes (4 steps); returns (output dir, stderr)."""
    changes.setdefault("training_args", {})
    changes["training_args"] = {"max_steps": 4, **changes["training_args"]}
    config = write_yaml(directory / "c.yaml", sft_config(directory, model_dir, batchsize_conf=BATCH, **changes))
    done = torchrun("sft", str(config), timeout=300)
    assert done.returncode == 0, done.stderr[-4000:]
    return directory / "out", done.stderr


@pytest.fixture(scope="module")
def reference_run(tmp_path_factory, tiny_model_dir):
    """The same config in one process (4 per device x 2 accumulation), in this process: what 2-process DDP equals
    bit for bit (platform-facts), without a third torchrun."""
    from finetuning.cli import main

    directory = tmp_path_factory.mktemp("reference")
    config = sft_config(directory, tiny_model_dir, batchsize_conf=BATCH, training_args={"max_steps": 4})
    assert main(["sft", str(write_yaml(directory / "c.yaml", config))]) == 0
    return directory / "out"


@pytest.fixture(scope="module")
def fsdp_run(tmp_path_factory, tiny_model_dir):
    """FULL_SHARD with sharded checkpoints at steps 2 and 4."""
    return train(tmp_path_factory.mktemp("fsdp"), tiny_model_dir, training_args=SHARDED)


@pytest.mark.slow
def test_fsdp_shards_for_real_and_trains_as_ddp(reference_run, fsdp_run):
    output, log = fsdp_run
    (line,) = SHARDING_LINE.findall(log)  # the main process alone logs
    count, processes, local, full, name, *shapes = line
    assert (int(processes), int(local) * 2) == (2, int(full)) and int(count) > 10
    local_rows, columns, full_rows, full_columns = map(int, shapes)
    assert (local_rows * 2, columns) == (full_rows, full_columns), name
    losses, ddp_losses = logged_losses(output), logged_losses(reference_run)
    assert len(losses) == 4 and losses == pytest.approx(ddp_losses, abs=1e-5)


@pytest.mark.slow
def test_final_model_is_one_consolidated_model_plain_transformers_loads(reference_run, fsdp_run):
    from transformers import AutoModelForCausalLM

    final, ddp_final = fsdp_run[0] / "checkpoint-final", reference_run / "checkpoint-final"
    assert not any(final.glob("pytorch_model_fsdp*"))  # SHARDED_STATE_DICT checkpoints, a consolidated final model
    model = AutoModelForCausalLM.from_pretrained(final)
    reference = load_file(ddp_final / "model.safetensors")
    weights = model.state_dict()
    for key, tensor in reference.items():
        assert weights[key].shape == tensor.shape
        torch.testing.assert_close(weights[key], tensor, atol=1e-5, rtol=0)


@pytest.mark.slow
def test_sharded_checkpoint_resumes_bit_identical(tmp_path, tiny_model_dir, fsdp_run):
    uninterrupted = fsdp_run[0]
    checkpoint = uninterrupted / "checkpoint-2"
    assert (checkpoint / "pytorch_model_fsdp_0").is_dir() and not (checkpoint / "model.safetensors").exists()
    shutil.copytree(checkpoint, tmp_path / "out" / "checkpoint-2")
    run_conf = {"model": str(tiny_model_dir), "resume_from_checkpoint": str(tmp_path / "out" / "checkpoint-2")}
    output, log = train(tmp_path, tiny_model_dir, training_args=SHARDED, run_conf=run_conf)
    assert "resuming from" in log and "FSDP2: sharded" in log
    resumed = load_file(output / "checkpoint-final" / "model.safetensors")
    straight = load_file(uninterrupted / "checkpoint-final" / "model.safetensors")
    assert resumed.keys() == straight.keys()
    assert all(torch.equal(resumed[key], straight[key]) for key in straight)
    assert logged_losses(output) == logged_losses(uninterrupted)[2:]


@pytest.mark.slow
def test_lora_trains_under_fsdp_in_bf16(tmp_path, tiny_model_dir):
    """chat-ml adds tokens: the embeddings train with the adapter (modules_to_save) and the resized base is saved."""
    import peft
    from transformers import AutoModelForCausalLM

    output, log = train(
        tmp_path, tiny_model_dir, training_args={"max_steps": 3, "fsdp": True, "bf16": True}, peft_conf=LORA
    )
    assert re.search(r"FSDP2: sharded \d+ parameters over 2 processes.*computed in bfloat16", log)  # not fp32
    final = output / "checkpoint-final"
    adapter = load_file(final / "adapter_model.safetensors")
    assert any("lora_B" in key and tensor.abs().sum() > 0 for key, tensor in adapter.items())  # B starts at zero
    assert all(tensor.shape[0] == 514 for key, tensor in adapter.items() if "embed_tokens" in key)  # full rows
    base = AutoModelForCausalLM.from_pretrained(output / "checkpoint-new-basemodel")
    assert isinstance(peft.PeftModel.from_pretrained(base, final), peft.PeftModel)


@pytest.mark.slow
def test_qlora_trains_under_fsdp_with_4bit_weights_stored_in_bf16(tmp_path, tiny_model_dir):
    """4-bit weights are sharded with the bf16 parameters around them: their storage dtype is set to bf16."""
    quant_conf = {"quantization_type": "bits-and-bytes", "load_in_4bit": True, "bnb_4bit_compute_dtype": "bfloat16"}
    output, log = train(
        tmp_path,
        tiny_model_dir,
        training_args={"max_steps": 2, "fsdp": True, "bf16": True},
        run_conf={"model": str(tiny_model_dir), "model_args": {"torch_dtype": "bfloat16"}},
        data_conf={"chat_template_name": "keep-original"},  # a quantized model cannot grow its vocabulary
        peft_conf=LORA,
        quant_conf=quant_conf,
    )
    assert "quant_conf.bnb_4bit_quant_storage: bfloat16 (FSDP shards 4-bit weights with the others)" in log
    assert re.search(r"FSDP2: sharded \d+ parameters over 2 processes.*computed in bfloat16", log)
    adapter = load_file(output / "checkpoint-final" / "adapter_model.safetensors")
    assert any("lora_B" in key and tensor.abs().sum() > 0 for key, tensor in adapter.items())
    assert len(logged_losses(output)) == 2


# --- the config, without torchrun -----------------------------------------------------------------------------------


@pytest.fixture
def two_processes(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")


def test_fsdp_words_fold_into_fsdp2_config(two_processes):
    args = fsdp_arguments({"fsdp": "shard_grad_op auto_wrap offload", "fsdp_config": {"fsdp_min_num_params": 0}})
    assert args["fsdp"] is True
    assert args["fsdp_config"] == {
        "version": 2,
        "reshard_after_forward": False,
        "cpu_offload": True,
        "min_num_params": 0,
    }
    assert fsdp_arguments({"fsdp": ["full_shard"]})["fsdp_config"] == {"version": 2, "reshard_after_forward": True}


def test_fsdp_config_keys_are_read_from_the_installed_transformers():
    keys = accepted_config_keys()
    expected = {"version", "reshard_after_forward", "cpu_offload", "state_dict_type", "transformer_layer_cls_to_wrap"}
    assert expected <= set(keys) and "xla_fsdp_settings" in keys


@pytest.mark.parametrize(
    ("training_args", "problem"),
    [
        ({"fsdp": "full_shard", "fsdp_config": {"reshard_after_forwrd": True}}, "training_args.fsdp_config."
         "reshard_after_forwrd: unknown FSDP option (not read by transformers); did you mean 'reshard_after_forward'?"),
        ({"fsdp": "hybrid_shard"}, "training_args.fsdp: hybrid_shard does not exist in FSDP2"),
        ({"fsdp": "no_shard"}, "several processes train data-parallel (DDP) without it"),
        ({"fsdp": "full_shrd"}, "training_args.fsdp: unknown option 'full_shrd'; did you mean 'full_shard'?"),
        ({"fsdp": True, "fsdp_config": {"version": 1}}, "training_args.fsdp_config.version: 1 (FSDP1) runs on GPUs"),
        ({"fsdp": True, "deepspeed": {"zero_optimization": {}}}, "FSDP and training_args.deepspeed both shard"),
        ({"fsdp_config": {"version": 2}}, "training_args.fsdp_config: given, but training_args.fsdp is not set"),
        ({"fsdp": True, "fsdp_config": {"state_dict_type": "sharded"}}, "expected one of FULL_STATE_DICT, SHARDED_STATE_DICT"),
        ({"fsdp": True, "fsdp_config": {"activation_checkpointing": True}, "activation_checkpointing": True},
         "use fsdp_config.activation_checkpointing alone"),
    ],
)  # fmt: skip
def test_what_fsdp_cannot_do_is_refused_with_the_key(two_processes, training_args, problem):
    with pytest.raises(UserError) as refused:
        fsdp_arguments(training_args)
    assert problem in str(refused.value)


def test_one_process_trains_without_fsdp_and_says_so(monkeypatch, caplog):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    args = fsdp_arguments({"fsdp": "full_shard auto_wrap", "fsdp_config": {"version": 2}, "seed": 1})
    assert args == {"seed": 1}
    assert "one process, nothing to shard: training without FSDP" in caplog.text


def test_validate_reports_an_unknown_fsdp_config_key(tmp_path, tiny_model_dir, capsys):
    from finetuning.cli import main

    training_args = {"fsdp": "full_shard", "fsdp_config": {"fsdp_ofload_params": True}}
    config = write_yaml(tmp_path / "c.yaml", sft_config(tmp_path, tiny_model_dir, training_args=training_args))
    assert main(["validate", str(config)]) == 2
    assert "training_args.fsdp_config.fsdp_ofload_params: unknown FSDP option" in capsys.readouterr().err


def test_qlora_under_fsdp_stores_4bit_weights_in_the_model_dtype(tmp_path, tiny_model_dir, two_processes):
    from finetuning.config import validate_config
    from finetuning.model.loading import bitsandbytes_config
    from finetuning.train.fsdp import fsdp_quantization_problems

    quant_conf = {"quantization_type": "bits-and-bytes", "load_in_4bit": True, "bnb_4bit_compute_dtype": "bfloat16"}
    run_conf = {"model": str(tiny_model_dir), "model_args": {"torch_dtype": "bfloat16"}}
    training_args = {"fsdp": "full_shard auto_wrap"}
    cfg = validate_config(
        sft_config(
            tmp_path,
            tiny_model_dir,
            quant_conf=quant_conf,
            run_conf=run_conf,
            training_args=training_args,
            peft_conf=LORA,
        )
    )
    assert bitsandbytes_config(cfg.quant_conf, cfg.run_conf, fsdp=True).bnb_4bit_quant_storage == torch.bfloat16
    assert bitsandbytes_config(cfg.quant_conf, cfg.run_conf).bnb_4bit_quant_storage == torch.uint8  # no FSDP: packed
    assert fsdp_quantization_problems(cfg) == []
    cfg.quant_conf.bnb_4bit_quant_storage = "float16"
    (problem,) = fsdp_quantization_problems(cfg)
    assert problem.startswith("quant_conf.bnb_4bit_quant_storage: float16 under FSDP must be the dtype of the model's")


def test_vectorlm_sharding_strategies_become_the_trainers_fsdp(two_processes):
    from finetuning.config.dialects import Context
    from tests.config.dialects.test_vectorlm import SHIPPED, native_of

    native = native_of(SHIPPED, Context(num_processes=2))["training_args"]
    args = fsdp_arguments({"fsdp": native["fsdp"], "fsdp_config": native["fsdp_config"]})
    assert args["fsdp"] is True
    assert args["fsdp_config"] == {
        **native["fsdp_config"],  # auto_wrap_policy, activation_checkpointing, cpu_ram_efficient_loading
        "version": 2,
        "reshard_after_forward": True,  # FULL_SHARD
    }


def test_axolotl_fsdp_config_lands_on_the_trainers_keys(two_processes):
    from tests.config.dialects.test_axolotl import config, native_of

    axolotl = {
        "fsdp_version": 2,
        "fsdp_offload_params": False,
        "fsdp_state_dict_type": "FULL_STATE_DICT",
        "fsdp_transformer_layer_cls_to_wrap": "LlamaDecoderLayer",
        "fsdp_auto_wrap_policy": "TRANSFORMER_BASED_WRAP",
        "fsdp_sharding_strategy": "SHARD_GRAD_OP",
        "fsdp_reshard_after_forward": False,
        "fsdp_cpu_ram_efficient_loading": True,
        "fsdp_activation_checkpointing": True,
    }
    native = native_of(config(fsdp_config=axolotl))["training_args"]
    assert native["fsdp"] == "shard_grad_op auto_wrap"
    args = fsdp_arguments({"fsdp": native["fsdp"], "fsdp_config": native["fsdp_config"]})
    assert args["fsdp_config"] == {
        "version": 2,
        "cpu_offload": False,
        "state_dict_type": "FULL_STATE_DICT",
        "transformer_layer_cls_to_wrap": "LlamaDecoderLayer",
        "auto_wrap_policy": "TRANSFORMER_BASED_WRAP",
        "reshard_after_forward": False,
        "cpu_ram_efficient_loading": True,
        "activation_checkpointing": True,
    }
    assert json.dumps(args)  # plain values: the resolved config and the checkpoint's arguments keep them


def test_a_sharded_checkpoint_resumes_only_under_fsdp(tmp_path, two_processes):
    from finetuning.train.fsdp import sharded_checkpoint_problems

    (tmp_path / "pytorch_model_fsdp_0").mkdir()
    (problem,) = sharded_checkpoint_problems({}, str(tmp_path))
    assert problem.startswith(f"run_conf.resume_from_checkpoint: {tmp_path} holds FSDP shards")
    assert sharded_checkpoint_problems({"fsdp": True}, str(tmp_path)) == []
