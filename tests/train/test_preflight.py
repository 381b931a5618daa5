"""Pre-flight checks: every problem found before a model loads, listed at once, with absolute paths."""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
from collections import namedtuple
from pathlib import Path
from types import SimpleNamespace

import pytest

from finetuning.config import ConfigError, load_any_config
from finetuning.config.peft import GenericPeftConfig, NoPeftConfig, PretrainedPeftConfig
from finetuning.errors import UserError
from finetuning.model.loading import model_source_problems
from finetuning.train import checkpoint_size, output_checks
from finetuning.train.batch_size import BatchPlan
from finetuning.train.checkpoint_size import ADAPTER_FALLBACK_FRACTION, estimate_checkpoint_size
from finetuning.train.preflight import check_batch_sizes, run_preflight
from finetuning.train.resume_checks import check_resume_target, recipe_data_fingerprint
from tests.conftest import REPO, deep_update, sft_config, write_jsonl, write_yaml

LORA = {"peft_type": "LORA", "task_type": "CAUSAL_LM", "peft_kwargs": {"r": 4, "target_modules": ["q_proj", "v_proj"]}}
Usage = namedtuple("Usage", "total used free")


def load(tmp_path: Path, document: dict):
    cfg = load_any_config(write_yaml(tmp_path / "config.yaml", document))
    return cfg, check_batch_sizes(cfg)


def problems_of(cfg, plan, resume_from=None) -> list[str]:
    with pytest.raises(UserError) as caught:
        run_preflight(cfg, plan, resume_from)
    return caught.value.problems


def test_a_good_config_passes_creates_nothing_and_logs_the_estimate(tmp_path, tiny_model_dir, caplog):
    caplog.set_level(logging.INFO, logger="finetuning.train.checkpoint_size")
    cfg, plan = load(
        tmp_path, sft_config(tmp_path, tiny_model_dir, training_args={"output_dir": str(tmp_path / "a/b")})
    )
    run_preflight(cfg, plan, None)
    assert not (tmp_path / "a").exists()  # the output dir is probed, not created
    assert "checkpoint size estimate: about" in caplog.text
    assert not list(tmp_path.glob(".finetuning-write-test-*"))


def test_every_problem_is_listed_at_once_with_absolute_paths(tmp_path, tiny_model_dir, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "taken").write_text("a file, not a directory")
    document = sft_config(
        tmp_path,
        tiny_model_dir,
        data_conf={"training_data": {"datasets": [{"path": "data/missing.jsonl"}]}},
        run_conf={"model": "./models/absent"},
        training_args={"output_dir": "taken"},
    )
    cfg, plan = load(tmp_path, document)
    model, data, output = problems_of(cfg, plan)
    assert (
        model == f"run_conf.model: {tmp_path / 'models/absent'}: not found (a local path; hub ids look like 'org/name')"
    )
    assert data.endswith(f"{tmp_path / 'data/missing.jsonl'}: file not found")  # as `finetuning validate` says
    assert output == f"training_args.output_dir: {tmp_path / 'taken'}: exists and is not a directory"


def test_chat_template_names_are_checked_by_the_config(tmp_path, tiny_model_dir):
    document = sft_config(tmp_path, tiny_model_dir, data_conf={"chat_template_name": "chatml"})
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, document)
    assert any(p.startswith("data_conf.chat_template_name: must be ") for p in caught.value.problems)


# --- output directory ----------------------------------------------------------------------------------------------


def _refuse_writes(monkeypatch):
    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(output_checks.tempfile, "NamedTemporaryFile", refuse)


def test_unwritable_output_dir(tmp_path, tiny_model_dir, monkeypatch):
    (tmp_path / "out").mkdir()
    cfg, plan = load(tmp_path, sft_config(tmp_path, tiny_model_dir))
    _refuse_writes(monkeypatch)
    assert problems_of(cfg, plan) == [f"training_args.output_dir: {tmp_path / 'out'}: not writable (Permission denied)"]


def test_output_dir_that_cannot_be_created(tmp_path, tiny_model_dir, monkeypatch):
    cfg, plan = load(tmp_path, sft_config(tmp_path, tiny_model_dir, training_args={"output_dir": "x/y"}))
    monkeypatch.chdir(tmp_path)
    _refuse_writes(monkeypatch)
    assert problems_of(cfg, plan) == [
        f"training_args.output_dir: {tmp_path / 'x/y'}: not writable (cannot be created in {tmp_path}: "
        "Permission denied)"
    ]
    (tmp_path / "file").write_text("")
    assert output_checks.check_output_dir(str(tmp_path / "file" / "out")) == [
        f"training_args.output_dir: {tmp_path / 'file/out'}: cannot be created, {tmp_path / 'file'} is not a directory"
    ]


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes anywhere")
def test_read_only_directory_for_real(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o555)
    assert output_checks.check_output_dir(str(locked)) == [
        f"training_args.output_dir: {locked}: not writable (Permission denied)"
    ]


# --- disk space ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("save_strategy", "what", "multiple"), [("steps", "a checkpoint", 12), ("no", "the final model", 4)]
)
def test_too_little_disk_space(tmp_path, tiny_model_dir, monkeypatch, save_strategy, what, multiple):
    cfg, plan = load(tmp_path, sft_config(tmp_path, tiny_model_dir, training_args={"save_strategy": save_strategy}))
    monkeypatch.setattr(output_checks.shutil, "disk_usage", lambda path: Usage(10 * 1024**3, 0, 100 * 1024))
    parameters = estimate_checkpoint_size(tiny_model_dir, NoPeftConfig(peft_type="NO_PEFT")).parameters
    needed = checkpoint_size.format_bytes(parameters * multiple)  # fp32 weights (+ AdamW state when checkpointing)
    assert problems_of(cfg, plan) == [
        f"training_args.output_dir: {tmp_path / 'out'}: about {needed} needed for {what}, 100.0 KiB free"
    ]


def test_checkpoint_estimate_full_fine_tuning_is_exact(tiny_model_dir):
    from transformers import AutoModelForCausalLM

    parameters = AutoModelForCausalLM.from_pretrained(tiny_model_dir).num_parameters()
    full = NoPeftConfig(peft_type="NO_PEFT")
    estimate = estimate_checkpoint_size(tiny_model_dir, full)  # the tiny model is stored in float32
    assert (estimate.parameters, estimate.trainable_parameters) == (parameters, parameters)
    assert (estimate.weights_bytes, estimate.optimizer_bytes) == (4 * parameters, 8 * parameters)
    assert estimate.total_bytes == 12 * parameters
    bf16 = estimate_checkpoint_size(tiny_model_dir, full, torch_dtype="bfloat16", optim="adamw_bnb_8bit")
    assert (bf16.weights_bytes, bf16.optimizer_bytes) == (2 * parameters, 2 * parameters)
    assert "parameters trained" in estimate.describe()


@pytest.mark.parametrize(
    "peft_kwargs",
    [
        {"r": 4, "target_modules": ["q_proj", "v_proj"]},
        {"r": 8},  # peft's default target modules for llama
        {"r": 2, "target_modules": "all-linear"},
        {"r": 3, "target_modules": r".*\.mlp\..*_proj"},
    ],
)
def test_checkpoint_estimate_for_lora_counts_the_adapter_exactly(tiny_model_dir, peft_kwargs):
    import peft
    from transformers import AutoModelForCausalLM

    config = GenericPeftConfig(peft_type="LORA", peft_kwargs=peft_kwargs)
    model = peft.get_peft_model(AutoModelForCausalLM.from_pretrained(tiny_model_dir), config.get_peft_config())
    trainable = model.num_parameters(only_trainable=True)
    estimate = estimate_checkpoint_size(tiny_model_dir, config)
    assert estimate.trainable_parameters == trainable
    assert (estimate.weights_bytes, estimate.optimizer_bytes) == (4 * trainable, 8 * trainable)


def test_checkpoint_estimate_fallbacks(tmp_path, tiny_model_dir):
    full = estimate_checkpoint_size(tiny_model_dir, NoPeftConfig(peft_type="NO_PEFT"))
    ia3 = estimate_checkpoint_size(tiny_model_dir, GenericPeftConfig(peft_type="IA3"))
    assert ia3.trainable_parameters == math.ceil(full.parameters * ADAPTER_FALLBACK_FRACTION)
    assert "5% of the model" in ia3.basis
    # A pretrained adapter: its own parameter count.
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    import torch
    from safetensors.torch import save_file

    save_file(
        {"a.lora_A.weight": torch.zeros(4, 64), "a.lora_B.weight": torch.zeros(64, 4)},
        adapter / "adapter_model.safetensors",
    )
    pretrained = estimate_checkpoint_size(
        tiny_model_dir, PretrainedPeftConfig(peft_type="PRETRAINED_PEFT", name_or_path=str(adapter))
    )
    assert pretrained.trainable_parameters == 512 and pretrained.total_bytes == 512 * 12
    # Pickle weights: file size / bytes per parameter of config.json's dtype.
    pickled = tmp_path / "pickled"
    pickled.mkdir()
    shutil.copy(tiny_model_dir / "config.json", pickled)
    (pickled / "pytorch_model.bin").write_bytes(b"\0" * 4000)
    (pickled / "training_args.bin").write_bytes(b"\0" * 999)  # not weights
    assert estimate_checkpoint_size(pickled, NoPeftConfig(peft_type="NO_PEFT")).parameters == 1000
    assert estimate_checkpoint_size(tmp_path, NoPeftConfig(peft_type="NO_PEFT")) is None  # no weights at all


def test_hub_ids_are_looked_up_in_the_local_cache_only(tmp_path, tiny_model_dir, caplog):
    caplog.set_level(logging.INFO, logger="finetuning.train.checkpoint_size")
    cache = tmp_path / "hub"
    document = sft_config(
        tmp_path, tiny_model_dir, run_conf={"model": "org/tiny", "model_args": {"cache_dir": str(cache)}}
    )
    cfg, _ = load(tmp_path, document)
    assert checkpoint_size.checkpoint_size_estimate(cfg) is None
    assert "checkpoint size estimate: skipped, org/tiny is not on this machine" in caplog.text
    repo = cache / "models--org--tiny"
    snapshot = repo / "snapshots" / ("0" * 40)
    shutil.copytree(tiny_model_dir, snapshot)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("0" * 40)
    assert checkpoint_size.checkpoint_size_estimate(cfg) == estimate_checkpoint_size(tiny_model_dir, cfg.peft_conf)


# --- data and model ------------------------------------------------------------------------------------------------


def test_data_problems_come_from_the_validate_command_checks(tmp_path, tiny_model_dir):
    good = {"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]}
    data = write_jsonl(tmp_path / "d.jsonl", [good, {"messages": [{"role": "user", "content": "q"}]}])
    cfg, plan = load(tmp_path, sft_config(tmp_path, tiny_model_dir, data=data))
    [problem] = problems_of(cfg, plan)
    assert f"{data}:2: " in problem and "no assistant message" in problem
    dpo = sft_config(tmp_path, tiny_model_dir, data=REPO / "examples/data/facts.jsonl")
    dpo["method"] = "dpo"
    del dpo["sft_args"]
    cfg, plan = load(tmp_path, dpo)
    assert all("facts.jsonl:" in problem for problem in problems_of(cfg, plan))


def test_model_directory_problems(tmp_path, tiny_model_dir):
    empty = tmp_path / "empty"
    empty.mkdir()
    cfg, plan = load(tmp_path, sft_config(tmp_path, empty))
    assert problems_of(cfg, plan) == [f"run_conf.model: {empty}: no config.json there (not a model directory)"]
    pickled = tmp_path / "pickled"
    pickled.mkdir()
    shutil.copy(tiny_model_dir / "config.json", pickled)
    (pickled / "pytorch_model.bin").write_bytes(b"\0" * 16)
    cfg, plan = load(tmp_path, sft_config(tmp_path, pickled))
    [problem] = problems_of(cfg, plan)
    assert problem.startswith(f"run_conf.model: {pickled}: only pickle weights (pytorch_model.bin)")
    assert "`run_conf.model_args.use_safetensors: false`" in problem


# --- resume target -------------------------------------------------------------------------------------------------


def fake_checkpoint(tmp_path: Path, adapter: dict | None = None, state: dict | None = None) -> Path:
    checkpoint = tmp_path / "out" / "checkpoint-4"
    checkpoint.mkdir(parents=True)
    if state is not False:
        (checkpoint / "trainer_state.json").write_text(json.dumps({"global_step": 4, **(state or {})}))
    if adapter is not None:
        (checkpoint / "adapter_config.json").write_text(json.dumps(adapter))
        (checkpoint / "adapter_model.safetensors").write_bytes(b"")
    else:
        (checkpoint / "model.safetensors").write_bytes(b"")
    return checkpoint


LORA_SAVED = {"peft_type": "LORA", "r": 4, "target_modules": ["v_proj", "q_proj"]}


@pytest.mark.parametrize(
    ("peft_conf", "adapter", "state", "expected"),
    [
        ({"peft_type": "NO_PEFT"}, None, {"train_batch_size": 8}, None),
        (LORA, LORA_SAVED, {"train_batch_size": 8}, None),
        ({"peft_type": "NO_PEFT"}, None, False, "incomplete checkpoint, no trainer_state.json"),
        ({"peft_type": "NO_PEFT"}, LORA_SAVED, {}, "holds a LORA adapter, but peft_conf.peft_type is NO_PEFT"),
        (
            LORA,
            None,
            {},
            "holds a fully fine-tuned model (no adapter_config.json), but peft_conf configures an adapter",
        ),
        (LORA, {**LORA_SAVED, "r": 16}, {}, "trained with r=16, but peft_conf.peft_kwargs gives 4; restore r: 16"),
        (
            LORA,
            {**LORA_SAVED, "target_modules": ["q_proj"]},
            {},
            "trained with target_modules=['q_proj'], but peft_conf.peft_kwargs gives ['q_proj', 'v_proj']",
        ),
        (LORA, {**LORA_SAVED, "peft_type": "LOHA"}, {}, "holds a LOHA adapter, but the config trains LORA"),
        (
            {"peft_type": "NO_PEFT"},
            None,
            {"train_batch_size": 4},
            "was trained with 4 per device, but batchsize_conf (total 8, max per device 8) now gives 8 per device x 1 "
            "accumulation x 1 process(es); the data position would no longer match: restore "
            "batchsize_conf.max_per_device_train_batch_size: 4",
        ),
    ],
)
def test_resume_target_compatibility(tmp_path, tiny_model_dir, peft_conf, adapter, state, expected):
    checkpoint = fake_checkpoint(tmp_path, adapter, state)
    cfg, plan = load(tmp_path, sft_config(tmp_path, tiny_model_dir, peft_conf=peft_conf))
    problems = check_resume_target(cfg, plan, str(checkpoint))
    if expected is None:
        assert problems == []
    else:
        [problem] = problems
        assert problem.startswith(f"run_conf.resume_from_checkpoint: {checkpoint}: ") and expected in problem


def test_resume_from_a_pretrained_adapter_compares_with_that_adapter(tmp_path, tiny_model_dir):
    source = tmp_path / "source"
    source.mkdir()
    (source / "adapter_config.json").write_text(json.dumps({**LORA_SAVED, "r": 8}))
    (source / "adapter_model.safetensors").write_bytes(b"")
    checkpoint = fake_checkpoint(tmp_path, LORA_SAVED)
    peft_conf = {"peft_type": "PRETRAINED_PEFT", "name_or_path": str(source)}
    cfg, plan = load(tmp_path, sft_config(tmp_path, tiny_model_dir, peft_conf=peft_conf))
    [problem] = check_resume_target(cfg, plan, str(checkpoint))
    assert "trained with r=4, but peft_conf.name_or_path gives 8" in problem


def test_relative_resume_path_is_named_absolute(tmp_path, tiny_model_dir, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg, plan = load(tmp_path, sft_config(tmp_path, tiny_model_dir))
    assert check_resume_target(cfg, plan, "out/checkpoint-9") == [
        f"run_conf.resume_from_checkpoint: {tmp_path / 'out/checkpoint-9'}: no such checkpoint directory"
    ]


@pytest.fixture(scope="module")
def lora_checkpoint(tmp_path_factory, tiny_model_dir) -> tuple[Path, dict]:
    """A real LoRA checkpoint from one training step of `finetuning sft` (about 3 s on CPU)."""
    from finetuning.cli import main

    work = tmp_path_factory.mktemp("resume")
    document = sft_config(
        work, tiny_model_dir, peft_conf=LORA, training_args={"max_steps": 1, "save_strategy": "steps", "save_steps": 1}
    )
    assert main(["sft", str(write_yaml(work / "c.yaml", document))]) == 0
    return work / "out" / "checkpoint-1", document


@pytest.mark.slow
def test_real_checkpoint_is_compatible_with_its_own_config(tmp_path, lora_checkpoint):
    checkpoint, document = lora_checkpoint
    cfg, plan = load(tmp_path, document)
    assert json.loads((checkpoint / "trainer_state.json").read_text())["train_batch_size"] == 8  # per device
    record = json.loads((checkpoint / "finetuning_resume.json").read_text())  # written with every checkpoint
    assert record == {
        "per_device_train_batch_size": 8,
        "gradient_accumulation_steps": 1,
        "world_size": 1,
        "data_fingerprint": recipe_data_fingerprint(cfg),
        "global_step": 1,
        "max_steps": 1,
        "training_length": {"max_steps": 1, "num_train_epochs": 3.0},
    }
    assert check_resume_target(cfg, plan, str(checkpoint)) == []
    run_preflight(cfg, plan, str(checkpoint))


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"peft_conf": {"peft_type": "NO_PEFT"}}, "holds a LORA adapter, but peft_conf.peft_type is NO_PEFT"),
        ({"peft_conf": {"peft_kwargs": {"r": 8}}}, "trained with r=4, but peft_conf.peft_kwargs gives 8"),
        (
            {"batchsize_conf": {"total_train_batch_size": 16}},
            "was trained with 8 per device x 1 accumulation x 1 process(es), but batchsize_conf (total 16, max per "
            "device 8) now gives 8 per device x 2 accumulation x 1 process(es); the data position would no longer "
            "match: restore batchsize_conf.total_train_batch_size: 8 and "
            "batchsize_conf.max_per_device_train_batch_size: 8 on 1 process(es)",
        ),
        ({"batchsize_conf": {"max_per_device_train_batch_size": 4}}, "now gives 4 per device x 2 accumulation"),
    ],
)
def test_real_checkpoint_against_a_changed_config(tmp_path, lora_checkpoint, change, expected):
    checkpoint, document = lora_checkpoint
    changed = deep_update(document, change)
    if changed["peft_conf"]["peft_type"] == "NO_PEFT":
        changed["peft_conf"] = {"peft_type": "NO_PEFT"}
    cfg, plan = load(tmp_path, changed)
    [problem] = problems_of(cfg, plan, str(checkpoint))
    assert problem.startswith(f"run_conf.resume_from_checkpoint: {checkpoint}: ") and expected in problem


def test_a_change_in_the_number_of_processes_alone_is_caught(tmp_path, lora_checkpoint, monkeypatch):
    """Same per-device batch and accumulation, but 2 processes now: each step would read twice the data."""
    checkpoint, document = lora_checkpoint
    monkeypatch.setenv("WORLD_SIZE", "2")
    cfg, plan = load(tmp_path, deep_update(document, {"batchsize_conf": {"total_train_batch_size": 16}}))
    [problem] = check_resume_target(cfg, plan, str(checkpoint))
    assert "now gives 8 per device x 1 accumulation x 2 process(es)" in problem


def test_plan_from_batch_size_module_is_what_preflight_compares(tmp_path, tiny_model_dir):
    checkpoint = fake_checkpoint(tmp_path, None, {"train_batch_size": 2})
    cfg, _ = load(tmp_path, sft_config(tmp_path, tiny_model_dir))
    assert check_resume_target(cfg, BatchPlan(2, 4, 2), str(checkpoint)) == []


@pytest.mark.slow
def test_resuming_onto_changed_data_is_refused(tmp_path, tiny_model_dir, capsys):
    """The restored data position only means something in the same examples, in the same order."""
    from finetuning.cli import main

    data = tmp_path / "data.jsonl"
    shutil.copy(REPO / "examples" / "data" / "facts.jsonl", data)
    document = sft_config(
        tmp_path,
        tiny_model_dir,
        data=data,
        peft_conf=LORA,
        training_args={"max_steps": 1, "save_strategy": "steps", "save_steps": 1},
    )
    assert main(["sft", str(write_yaml(tmp_path / "c.yaml", document))]) == 0
    checkpoint = tmp_path / "out" / "checkpoint-1"
    cfg, plan = load(tmp_path, document)
    assert check_resume_target(cfg, plan, str(checkpoint)) == []

    cfg, plan = load(tmp_path, deep_update(document, {"sft_args": {"max_seq_length": 128}}))
    [problem] = check_resume_target(cfg, plan, str(checkpoint))
    assert "the data files or data settings (data_conf, max_seq_length) changed since this checkpoint" in problem
    with data.open("a") as handle:
        handle.write(data.read_text().splitlines()[0] + "\n")
    cfg, plan = load(tmp_path, document)
    assert len(check_resume_target(cfg, plan, str(checkpoint))) == 1

    data.unlink()  # gone altogether, on resume: the data check says so, the fingerprint does not crash on it
    resuming = deep_update(document, {"run_conf": {"resume_from_checkpoint": "auto"}})
    assert main(["sft", str(write_yaml(tmp_path / "resume.yaml", resuming))]) == 2
    error = capsys.readouterr().err
    assert f"{data}: file not found" in error and "Traceback" not in error


# --- model sources that are not local directories --------------------------------------------------------------------


def test_a_name_that_is_no_local_directory_will_be_fetched_online_with_a_did_you_mean(
    tmp_path, tiny_model_dir, monkeypatch, caplog
):
    """Online, a hub id is fetched (logged, not an error), and a close local directory is suggested."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("HF_HUB_OFFLINE")
    (tmp_path / "tiny-base").mkdir()
    cache = tmp_path / "hub"
    problems = model_source_problems("tiny-bse", model_args=SimpleNamespace(cache_dir=str(cache), revision=None))
    assert problems == []
    assert (
        f"run_conf.model: 'tiny-bse' is not a local directory: it will be fetched from the Hub; did you mean "
        f"{tmp_path}/tiny-base?" in caplog.text
    )


def test_offline_a_hub_id_in_the_local_cache_passes(tmp_path, tiny_model_dir, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    cache = tmp_path / "hub"
    document = sft_config(
        tmp_path, tiny_model_dir, run_conf={"model": "org/tiny", "model_args": {"cache_dir": str(cache)}}
    )
    cfg, plan = load(tmp_path, document)
    [problem] = problems_of(cfg, plan)
    assert problem.startswith("run_conf.model: 'org/tiny': not a local directory") and "HF_HUB_OFFLINE" in problem
    repo = cache / "models--org--tiny"
    shutil.copytree(tiny_model_dir, repo / "snapshots" / ("0" * 40))
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("0" * 40)
    run_preflight(cfg, plan, None)


def test_a_name_that_is_neither_a_path_nor_a_hub_id(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert model_source_problems("my model!") == [
        f"run_conf.model: 'my model!': neither a local directory ({tmp_path}/my model! does not exist) nor a valid "
        "hub id"
    ]


def test_training_arguments_are_built_in_the_preflight(tmp_path, tiny_model_dir):
    """Any check transformers makes when the arguments object is built is a pre-flight problem, in config keys."""
    document = sft_config(tmp_path, tiny_model_dir, training_args={"logging_steps": 1.5})
    cfg, plan = load(tmp_path, document)
    assert problems_of(cfg, plan) == ["training_args.logging_steps: must be an integer if bigger than 1: 1.5"]
    document = sft_config(tmp_path, tiny_model_dir, training_args={"lr_scheduler_type": "reduce_lr_on_plateau"})
    cfg, plan = load(tmp_path, document)
    assert problems_of(cfg, plan) == ["training_args: lr_scheduler_type reduce_lr_on_plateau requires an eval strategy"]
