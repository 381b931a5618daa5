"""The axolotl dialect's training-loop keys: batch semantics with several processes, epochs and warmup, save and
evaluation fractions, the schedule and optimizer (every name of the seed's list), stopping, checkpointing,
distributed options, the hub and W&B."""

from __future__ import annotations

import pytest

from finetuning.config.dialects import Context
from tests.config.dialects.test_axolotl import config, native_of, notices_of, problems_of, seed_optimizers
from tests.config.dialects.test_vectorlm import at

VAL = {"val_set_size": 0.1}


# --- batch ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("processes", "total"), [(1, 8), (2, 16), (8, 64)])
def test_micro_batch_is_per_device_and_the_total_grows_with_the_processes(processes, total):
    data = config(micro_batch_size=2, gradient_accumulation_steps=4, eval_batch_size=3)
    native = native_of(data, Context(num_processes=processes))
    assert native["batchsize_conf"] == {
        "max_per_device_train_batch_size": 2,
        "total_train_batch_size": total,
        "per_device_eval_batch_size": 3,
    }
    assert (
        f"micro_batch_size: 2 per device × 4 accumulation step(s) × {processes} process(es) = "
        f"batchsize_conf.total_train_batch_size {total}"
    ) in notices_of(data, Context(num_processes=processes))


def test_batch_defaults_are_axolotls():
    assert native_of(config())["batchsize_conf"] == {"max_per_device_train_batch_size": 1, "total_train_batch_size": 1}


def test_the_engines_batch_plan_is_axolotls_with_several_processes():
    from finetuning.config import validate_config
    from finetuning.train.batch_size import plan_batches

    conf = validate_config(
        native_of(config(micro_batch_size=2, gradient_accumulation_steps=3), Context(4))
    ).batchsize_conf
    plan = plan_batches(conf.total_train_batch_size, conf.max_per_device_train_batch_size, 4)
    assert (plan.per_device_train_batch_size, plan.gradient_accumulation_steps) == (2, 3)


# --- epochs, warmup, logging ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({}, {"num_train_epochs": 1, "warmup_steps": 0.03, "logging_steps": 0.005}),  # axolotl's defaults
        (
            {"num_epochs": 3, "warmup_steps": 10, "logging_steps": 5},
            {"num_train_epochs": 3, "warmup_steps": 10, "logging_steps": 5},
        ),  # fmt: skip
        (
            {"warmup_ratio": 0.1, "max_steps": 20},
            {"num_train_epochs": 1, "warmup_steps": 0.1, "logging_steps": 0.005, "max_steps": 20},
        ),  # fmt: skip
    ],
)
def test_length_warmup_and_logging(changes, expected):
    args = native_of(config(**changes))["training_args"]
    assert {key: args[key] for key in expected} == expected


def test_warmup_steps_and_ratio_together_are_refused():
    assert problems_of(config(warmup_steps=10, warmup_ratio=0.1)) == [
        "warmup_ratio: warmup_steps and warmup_ratio cannot both be set (as in axolotl); keep one"
    ]


# --- saving and evaluation: fractions of an epoch ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({}, {"save_strategy": "epoch", "save_total_limit": 4}),
        ({"saves_per_epoch": 1}, {"save_strategy": "epoch", "save_total_limit": 4}),
        ({"saves_per_epoch": 4}, {"save_strategy": "steps", "save_steps": 0.25, "save_total_limit": 4}),
        (
            {"saves_per_epoch": 2, "num_epochs": 4},
            {"save_strategy": "steps", "save_steps": 0.125, "save_total_limit": 4},
        ),
        (
            {"saves_per_epoch": 1, "num_epochs": 4},
            {"save_strategy": "steps", "save_steps": 0.25, "save_total_limit": 4},
        ),
        (
            {"save_steps": 50, "save_total_limit": 2},
            {"save_strategy": "steps", "save_steps": 50, "save_total_limit": 2},
        ),
        ({"save_strategy": "no"}, {"save_strategy": "no", "save_total_limit": 4}),
    ],
)
def test_saving(changes, expected):
    args = native_of(config(**changes))["training_args"]
    assert {key: args[key] for key in args if key.startswith("save")} == expected


def test_saves_per_epoch_says_what_fraction_of_the_steps_it_became():
    assert "saves_per_epoch: 2 per epoch × 4 epoch(s): save_steps 0.125 of all steps" in notices_of(
        config(saves_per_epoch=2, num_epochs=4)
    )


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"evals_per_epoch": 4}, {"eval_strategy": "steps", "eval_steps": 0.25, "eval_on_start": True}),
        (
            {"evals_per_epoch": 2, "num_epochs": 3},
            {"eval_strategy": "steps", "eval_steps": 1 / 6, "eval_on_start": True},
        ),
        ({"evals_per_epoch": 1}, {"eval_strategy": "epoch", "eval_on_start": True}),  # axolotl would never evaluate
        ({"eval_steps": 20}, {"eval_strategy": "steps", "eval_steps": 20, "eval_on_start": True}),
        ({"eval_steps": 0.1}, {"eval_strategy": "steps", "eval_steps": 0.1, "eval_on_start": True}),
        ({"eval_strategy": "epoch"}, {"eval_strategy": "epoch", "eval_on_start": True}),
        ({"eval_strategy": "no"}, {"eval_strategy": "no"}),
        ({}, {}),  # a validation split, never evaluated: as axolotl
    ],
)
def test_evaluation(changes, expected):
    args = native_of(config(**VAL, **changes))["training_args"]
    assert {key: args[key] for key in args if key.startswith("eval")} == expected


def test_evaluation_keys_without_validation_data_are_noticed():
    assert "evals_per_epoch: not used: no validation data (val_set_size is 0 and there are no test_datasets)" in (
        notices_of(config(evals_per_epoch=4))
    )
    assert "eval_strategy" not in native_of(config(evals_per_epoch=4))["training_args"]


def test_a_validation_split_that_is_never_evaluated_is_noticed():
    assert "val_set_size: no eval_steps, evals_per_epoch or eval_strategy: the validation data is never evaluated" in (
        notices_of(config(**VAL))
    )


@pytest.mark.parametrize(
    ("changes", "problem"),
    [
        ({"eval_steps": 5, "evals_per_epoch": 2}, "evals_per_epoch: eval_steps and evals_per_epoch cannot both be set"),
        ({"save_steps": 5, "saves_per_epoch": 2}, "saves_per_epoch: save_steps and saves_per_epoch cannot both be set"),
        (
            {"evals_per_epoch": 2, "eval_strategy": "epoch"},
            "eval_strategy: must be steps (or unset) with evals_per_epoch",
        ),
        ({"save_strategy": "sometimes"}, "save_strategy: unknown value 'sometimes'"),
    ],
)
def test_conflicting_save_and_eval_keys(changes, problem):
    assert any(p.startswith(problem) for p in problems_of(config(**VAL, **changes)))


# --- schedule ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "scheduler", "kwargs"),
    [
        ({}, "cosine", None),
        ({"lr_scheduler": "linear"}, "linear", None),
        ({"cosine_min_lr_ratio": 0.1}, "cosine", {"min_lr_ratio": 0.1}),
        (
            {"cosine_min_lr_ratio": 0.1, "cosine_constant_lr_ratio": 0.8},
            "cosine",
            {"min_lr_ratio": 0.1, "constant_lr_ratio": 0.8},
        ),  # fmt: skip
        ({"lr_quadratic_warmup": True, "cosine_min_lr_ratio": 0.1}, "cosine", {"quadratic_warmup": True}),
        ({"lr_scheduler": "one_cycle", "lr_div_factor": 10}, "one_cycle", {"div_factor": 10}),
        (
            {"lr_scheduler_kwargs": {"num_cycles": 2}, "lr_scheduler": "cosine_with_restarts"},
            "cosine_with_restarts",
            {"num_cycles": 2},
        ),  # fmt: skip
    ],
)
def test_schedule(changes, scheduler, kwargs):
    args = native_of(config(**changes))["training_args"]
    assert (args["lr_scheduler_type"], args.get("lr_scheduler_kwargs")) == (scheduler, kwargs)


@pytest.mark.parametrize(
    ("changes", "notice"),
    [
        (
            {"lr_scheduler": "linear", "cosine_min_lr_ratio": 0.1},
            "cosine_min_lr_ratio: not used: axolotl applies it to lr_scheduler cosine only, this is linear",
        ),  # fmt: skip
        (
            {"cosine_constant_lr_ratio": 0.8},
            "cosine_constant_lr_ratio: not used: axolotl applies it together with cosine_min_lr_ratio only",
        ),  # fmt: skip
        (
            {"lr_quadratic_warmup": True, "cosine_min_lr_ratio": 0.1},
            "cosine_min_lr_ratio: not used: lr_quadratic_warmup wins, as in axolotl",
        ),  # fmt: skip
        ({"lr_div_factor": 10}, "lr_div_factor: not used: it is OneCycleLR's div_factor, for lr_scheduler one_cycle"),
    ],
)
def test_schedule_options_axolotl_ignores_are_noticed(changes, notice):
    assert notice in notices_of(config(**changes))


def test_rex_is_refused_and_ratios_are_fractions():
    assert problems_of(config(lr_scheduler="rex")) == [
        "lr_scheduler: rex (axolotl's own schedule) is not available here; use cosine or one_cycle"
    ]
    assert problems_of(config(cosine_min_lr_ratio=1.5)) == ["cosine_min_lr_ratio: must be between 0 and 1, got 1.5"]


# --- optimizer -----------------------------------------------------------------------------------------------------

SEED_OPTIMIZERS = {  # seed 002's list → the native optim, or the start of the problem
    "adamw_hf": "adamw_torch",
    "adamw_torch": "adamw_torch",
    "adamw_torch_fused": "adamw_torch_fused",
    "adamw_torch_xla": "optimizer: adamw_torch_xla: runs on TPUs (torch_xla) only",
    "adamw_apex_fused": "optimizer: adamw_apex_fused: NVIDIA apex's fused AdamW is gone from transformers 5",
    "adafactor": "adafactor",
    "adamw_anyprecision": "optimizer: adamw_anyprecision: needs torchdistx",
    "adamw_bnb_8bit": "adamw_bnb_8bit",
    "lion_8bit": "lion_8bit",
    "lion_32bit": "lion_32bit",
    "sgd": "sgd",
    "adagrad": "adagrad",
}


def test_the_table_covers_the_seeds_optimizer_list():
    assert sorted(seed_optimizers()) == sorted(SEED_OPTIMIZERS)


@pytest.mark.parametrize(("name", "expected"), SEED_OPTIMIZERS.items())
def test_every_optimizer_of_the_seed(name, expected):
    translation_problems = problems_of(config(optimizer=name))
    if expected.startswith("optimizer: "):
        (problem,) = translation_problems
        assert problem.startswith(expected) and "use " in problem
    else:
        assert translation_problems == []
        assert native_of(config(optimizer=name))["training_args"]["optim"] == expected


@pytest.mark.parametrize(
    ("name", "expected"),
    [(None, "adamw_torch_fused"), ("adamw_8bit", "adamw_bnb_8bit"), ("paged_adamw_8bit", "paged_adamw_8bit")],
)
def test_axolotl_optimizer_spellings_and_default(name, expected):
    assert native_of(config(optimizer=name))["training_args"]["optim"] == expected


def test_optimizer_notices_and_problems():
    assert (
        "optimizer: adamw_hf (transformers' own AdamW) is gone from transformers 5: adamw_torch, the same update"
        in (notices_of(config(optimizer="adamw_hf")))
    )
    assert problems_of(config(optimizer="muon"))[0].startswith("optimizer: muon is one of axolotl's own optimizers")
    assert problems_of(config(optimizer="adamw_tourch")) == [
        "optimizer: unknown optimizer 'adamw_tourch'; did you mean 'adamw_torch'?"
    ]


def test_optimizer_settings():
    args = native_of(
        config(
            optim_args={"betas": "(0.9,0.99)", "eps": 1e-6},
            weight_decay=0.1,
            adam_beta1=0.8,
            adam_beta2=0.95,
            adam_epsilon=1e-7,
            max_grad_norm=0.5,
            optim_target_modules=["attn"],
        )
    )["training_args"]
    assert args["optim_args"] == "betas=(0.9,0.99),eps=1e-06"
    assert (args["weight_decay"], args["adam_beta1"], args["adam_beta2"]) == (0.1, 0.8, 0.95)
    assert (args["adam_epsilon"], args["max_grad_norm"], args["optim_target_modules"]) == (1e-7, 0.5, ["attn"])


# --- stopping, checkpointing, sampling, compile ----------------------------------------------------------------------


def test_loss_watchdog_and_early_stopping():
    native = native_of(config(**VAL, eval_steps=5, loss_watchdog_threshold=5.0, early_stopping_patience=3))
    assert native["stopping"] == {"loss_threshold": 5.0, "early_stopping_patience": 3}
    assert "loss_watchdog_patience: not used: loss_watchdog_threshold is not set" in notices_of(
        config(loss_watchdog_patience=3)
    )


def test_gradient_checkpointing():
    args = native_of(config(gradient_checkpointing=True))["training_args"]
    assert (args["activation_checkpointing"], args["activation_checkpointing_kwargs"]) == (
        True,
        {"use_reentrant": False},
    )
    kwargs = {"use_reentrant": True}
    args = native_of(config(gradient_checkpointing=True, gradient_checkpointing_kwargs=kwargs))["training_args"]
    assert args["activation_checkpointing_kwargs"] == kwargs
    assert "activation_checkpointing" not in native_of(config(gradient_checkpointing=False))["training_args"]
    assert problems_of(config(gradient_checkpointing="offload")) == [
        "gradient_checkpointing: offload: activation offloading is not supported; use gradient_checkpointing: true"
    ]


@pytest.mark.parametrize(
    ("changes", "strategy"),
    [({"group_by_length": True}, "group_by_length"), ({"curriculum_sampling": True}, "sequential"), ({}, None)],
)
def test_sampling_order(changes, strategy):
    assert native_of(config(**changes))["training_args"].get("train_sampling_strategy") == strategy


def test_group_by_length_and_curriculum_sampling_conflict():
    assert problems_of(config(group_by_length=True, curriculum_sampling=True)) == [
        "curriculum_sampling: curriculum_sampling (the data's order) and group_by_length (batches of similar length) "
        "choose different orders; keep one"
    ]


def test_torch_compile():
    args = native_of(config(torch_compile=True, torch_compile_mode="max-autotune"))["training_args"]
    assert (args["torch_compile"], args["torch_compile_mode"]) == (True, "max-autotune")
    assert "torch_compile: auto: not compiled (the model runs eagerly); set torch_compile: true to compile" in (
        notices_of(config(torch_compile="auto"))
    )


def test_resume():
    assert at(native_of(config(resume_from_checkpoint="out/checkpoint-9")), "run_conf.resume_from_checkpoint") == (
        "out/checkpoint-9"
    )
    assert at(native_of(config(auto_resume_from_checkpoints=True)), "run_conf.resume_from_checkpoint") == "auto"
    both = config(auto_resume_from_checkpoints=True, resume_from_checkpoint="c")
    assert at(native_of(both), "run_conf.resume_from_checkpoint") == "c"  # a named checkpoint wins


# --- distributed, hub, W&B -------------------------------------------------------------------------------------------


def test_distributed_options_are_the_trainers():
    args = native_of(
        config(
            fsdp=["full_shard", "auto_wrap"],
            fsdp_config={"fsdp_version": 2, "offload_params": False},
            ddp_timeout=3600,
            ddp_bucket_cap_mb=25,
            ddp_broadcast_buffers=False,
            deepspeed="zero2.json",
        )
    )["training_args"]
    assert args["fsdp"] == "full_shard auto_wrap"
    assert args["fsdp_config"] == {"version": 2, "cpu_offload": False}  # axolotl's offload_params: the trainer's name
    assert (args["ddp_timeout"], args["ddp_bucket_cap_mb"], args["ddp_broadcast_buffers"]) == (3600, 25, False)
    assert args["deepspeed"] == "zero2.json"
    assert native_of(config(fsdp_config={"offload_params": True}))["training_args"]["fsdp"] == "full_shard auto_wrap"
    assert "fsdp: applies to multi-process runs (this translation is for 1 process(es))" in notices_of(
        config(fsdp=["full_shard"])
    )


def test_hub_model_id_pushes_privately_with_a_notice():
    args = native_of(config(hub_model_id="me/model", hub_strategy="end"))["training_args"]
    assert {key: args[key] for key in ("hub_model_id", "push_to_hub", "hub_private_repo", "hub_strategy")} == {
        "hub_model_id": "me/model",
        "push_to_hub": True,
        "hub_private_repo": True,
        "hub_strategy": "end",
    }
    assert any("needs a Hugging Face token" in notice for notice in notices_of(config(hub_model_id="me/model")))


def test_wandb_keys():
    data = config(wandb_project="p", wandb_entity="team", wandb_name="run", wandb_watch=False, wandb_log_model="end")
    assert native_of(data)["wandb"] == {
        "project": "p",
        "entity": "team",
        "run_name": "run",
        "watch": "false",
        "log_model": "end",
    }
    assert "wandb" not in native_of(config(wandb_project="p", use_wandb=False))
    assert "wandb_entity: not used: W&B is off (no wandb_project)" in notices_of(config(wandb_entity="team"))
    assert problems_of(config(use_wandb=True)) == [
        "wandb_project: required when use_wandb is true (the W&B project the run logs to)"
    ]


def test_mlflow_keys():
    native = native_of(config(mlflow_tracking_uri="file:/tmp/m", mlflow_experiment_name="e", mlflow_run_name="r"))
    assert native["tracking"] == {"mlflow_server_uri": "file:/tmp/m", "experiment_name": "e", "run_name": "r"}
    assert problems_of(config(use_mlflow=True)) == [
        "mlflow_experiment_name: required with MLflow tracking (the experiment the run is logged to)"
    ]
