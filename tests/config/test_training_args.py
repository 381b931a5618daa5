"""training_args: validation against the installed TrainingArguments, forbidden keys, legacy-key translation."""

from __future__ import annotations

import pytest
from transformers import TrainingArguments

from finetuning.config import (
    TRAINING_ARGS_FORBIDDEN,
    ConfigError,
    TrainingArgsError,
    validate_config,
    validate_training_args,
)


def problems_of(args: dict) -> list[str]:
    with pytest.raises(TrainingArgsError) as info:
        validate_training_args(args, TrainingArguments)
    return info.value.problems


def test_valid_args_pass_through_and_output_dir_default():
    args, notices = validate_training_args({"learning_rate": 1e-4, "lr_scheduler_type": "cosine"}, TrainingArguments)
    assert args == {"learning_rate": 1e-4, "lr_scheduler_type": "cosine", "output_dir": "./checkpoints"}
    assert notices == []


def test_yaml_string_number_is_coerced():
    # PyYAML reads `1e-4` (no dot) as a string.
    args, _ = validate_training_args({"learning_rate": "1e-4"}, TrainingArguments)
    assert args["learning_rate"] == pytest.approx(1e-4)


def test_unknown_key_suggests_closest():
    assert problems_of({"learning_rte": 1e-4}) == [
        "training_args.learning_rte: unknown key; did you mean 'learning_rate'?"
    ]


def test_type_error():
    (problem,) = problems_of({"learning_rate": "abc"})
    assert problem.startswith("training_args.learning_rate: ")
    (problem,) = problems_of({"num_train_epochs": [1]})
    assert problem.startswith("training_args.num_train_epochs: ")


@pytest.mark.parametrize("key", TRAINING_ARGS_FORBIDDEN)
def test_forbidden_keys(key):
    (problem,) = problems_of({key: 4})
    assert problem.startswith(f"training_args.{key}: ") and "batchsize_conf" in problem


def test_warmup_ratio_translated():
    args, notices = validate_training_args({"warmup_ratio": 0.1}, TrainingArguments)
    assert args["warmup_steps"] == 0.1 and "warmup_ratio" not in args
    assert len(notices) == 1 and notices[0].startswith("training_args.warmup_ratio: ")


def test_warmup_ratio_and_steps_is_error():
    (problem,) = problems_of({"warmup_ratio": 0.1, "warmup_steps": 10})
    assert problem.startswith("training_args.warmup_ratio: both")


def test_group_by_length():
    args, notices = validate_training_args({"group_by_length": True}, TrainingArguments)
    assert args["train_sampling_strategy"] == "group_by_length" and "group_by_length" not in args
    assert len(notices) == 1
    args, notices = validate_training_args({"group_by_length": False}, TrainingArguments)
    assert "train_sampling_strategy" not in args and "group_by_length" not in args
    assert len(notices) == 1


def test_evaluation_strategy_renamed():
    args, notices = validate_training_args({"evaluation_strategy": "epoch"}, TrainingArguments)
    assert args["eval_strategy"] == "epoch" and "evaluation_strategy" not in args
    assert notices == ["training_args.evaluation_strategy: renamed to eval_strategy: epoch"]


def test_overwrite_output_dir_dropped():
    args, notices = validate_training_args({"overwrite_output_dir": True}, TrainingArguments)
    assert "overwrite_output_dir" not in args
    assert "resume_from_checkpoint" in notices[0]


def test_save_safetensors():
    args, notices = validate_training_args({"save_safetensors": True}, TrainingArguments)
    assert "save_safetensors" not in args and len(notices) == 1
    (problem,) = problems_of({"save_safetensors": False})
    assert problem.startswith("training_args.save_safetensors: ")


def test_logging_dir_kept_out_of_args_but_exposed(minimal_config):
    minimal_config["training_args"] = {"logging_dir": "/logs/tb", "warmup_ratio": 0.05}
    cfg = validate_config(minimal_config)
    assert "logging_dir" not in cfg.training_args
    assert cfg.logging_dir == "/logs/tb"
    assert cfg.legacy_logging_dir == "/logs/tb"
    assert len(cfg.notices) == 2
    assert any(n.startswith("training_args.logging_dir: ") for n in cfg.notices)


def test_all_training_args_problems_at_once(minimal_config):
    minimal_config["training_args"] = {
        "learning_rate": "abc",
        "per_device_train_batch_size": 2,
        "evalution_strategy": "steps",
    }
    with pytest.raises(ConfigError) as info:
        validate_config(minimal_config)
    problems = info.value.problems
    assert len(problems) == 3
    assert "training_args.evalution_strategy: unknown key; did you mean 'eval_strategy'?" in problems
    assert any(p.startswith("training_args.learning_rate: ") for p in problems)
    assert any(p.startswith("training_args.per_device_train_batch_size: ") for p in problems)


def test_legacy_key_still_present_is_passed_through():
    class Fake:
        pass

    import dataclasses

    fake = dataclasses.make_dataclass(
        "Fake", [("output_dir", str | None, None), ("warmup_ratio", float, 0.0), ("warmup_steps", int, 0)]
    )
    args, notices = validate_training_args({"warmup_ratio": 0.1}, fake)
    assert args == {"warmup_ratio": 0.1, "output_dir": "./checkpoints"}
    assert notices == []


def test_works_with_dpo_config():
    trl = pytest.importorskip("trl")
    args, _ = validate_training_args({"beta": 0.2, "loss_type": "sigmoid", "warmup_ratio": 0.1}, trl.DPOConfig)
    assert args["beta"] == 0.2 and args["warmup_steps"] == 0.1


def test_enum_value_checked_with_suggestion():
    (problem,) = problems_of({"lr_scheduler_type": "cosin"})
    assert problem == "training_args.lr_scheduler_type: unknown value 'cosin'; did you mean 'cosine'?"


def test_union_alternatives_merged_into_one_line():
    (problem,) = problems_of({"report_to": 5})
    assert problem.startswith("training_args.report_to: must be ") and " or " in problem


def test_single_value_for_list_field_accepted():
    args, _ = validate_training_args({"label_names": "labels"}, TrainingArguments)
    assert args["label_names"] == "labels"


@pytest.mark.parametrize(
    ("key", "value", "problem"),
    [
        ("learning_rate", -1e-4, "must be greater than 0, got -0.0001"),
        ("learning_rate", 0, "must be greater than 0, got 0"),
        ("warmup_steps", -3, "must be greater than or equal to 0, got -3"),
        ("logging_steps", 0, "must be greater than 0, got 0"),
        ("save_steps", -1, "must be greater than 0, got -1"),
        ("max_steps", True, "must be a number, got true"),
        ("num_train_epochs", False, "must be a number, got false"),
        ("learning_rate", "fast", "must be a valid number, got 'fast'"),
    ],
)
def test_values_that_would_train_nothing_useful(key, value, problem):
    assert problems_of({key: value}) == [f"training_args.{key}: {problem}"]


def test_yaml_string_numbers_are_range_checked_after_coercion():
    assert problems_of({"learning_rate": "-1e-4"}) == [
        "training_args.learning_rate: must be greater than 0, got -0.0001"
    ]


def test_loss_types_are_checked_against_the_installed_trl():
    from trl import DPOConfig, KTOConfig

    with pytest.raises(TrainingArgsError) as info:
        validate_training_args({"loss_type": ["sigmoid", "sigmod"]}, DPOConfig)
    assert info.value.problems == ["training_args.loss_type: unknown value 'sigmod'; did you mean 'sigmoid'?"]
    with pytest.raises(TrainingArgsError) as info:
        validate_training_args({"loss_type": "dpo"}, KTOConfig)
    assert info.value.problems == [
        "training_args.loss_type: unknown value 'dpo'; expected one of kto, apo_zero_unpaired"
    ]
    assert validate_training_args({"loss_type": "ipo"}, DPOConfig)[0]["loss_type"] == "ipo"


@pytest.mark.parametrize(
    ("key", "hint"),
    [
        ("max_length", "use sft_args.max_seq_length"),
        ("max_seq_length", "use sft_args.max_seq_length"),
        ("packing", "use sft_args.packing"),
        ("padding_free", "use sft_args.packing"),
        ("completion_only_loss", "use sft_args.train_on_completions_only"),
        ("assistant_only_loss", "use sft_args.train_on_completions_only"),
        ("dataset_text_field", "rows are chat conversations (`messages`)"),
    ],
)
def test_trl_style_keys_point_to_ours(key, hint):
    (problem,) = problems_of({key: 1})
    assert problem.startswith(f"training_args.{key}: unknown key; {hint}")


def test_trl_max_seq_length_in_a_dpo_config_points_to_max_length():
    trl = pytest.importorskip("trl")
    with pytest.raises(TrainingArgsError) as info:
        validate_training_args({"max_seq_length": 512}, trl.DPOConfig)
    assert info.value.problems == ["training_args.max_seq_length: unknown key; use training_args.max_length"]
