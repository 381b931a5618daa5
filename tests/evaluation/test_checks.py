"""eval_conf's schema and pre-flight checks, and the liger-kernel check: config errors before any model loads."""

from __future__ import annotations

import pytest

from finetuning.cli import main as cli_main
from finetuning.config import load_config
from finetuning.config.evaluation import EvalConfig
from finetuning.config.loading import ConfigError
from finetuning.evaluation.checks import eval_conf_problems
from finetuning.train.preflight import liger_problems
from tests.conftest import sft_config, write_jsonl, write_yaml

torch = pytest.importorskip("torch")


def test_benchmark_types_and_defaults(tmp_path):
    conf = EvalConfig.model_validate(
        {
            "benchmarks": [
                {"type": "lm_eval", "tasks": ["a"]},
                {"type": "lm_eval", "tasks": ["b"], "limit": 0.5, "num_fewshot": 2},
                {"type": "exact_match", "dataset": "data/heldout.jsonl"},
                {"type": "exact_match", "dataset": "x.jsonl", "name": "mine"},
                {"type": "human_eval", "dataset": "he.jsonl"},
            ]
        }
    )
    assert conf.labels() == ["lm_eval", "lm_eval_2", "exact_match_heldout", "mine", "human_eval"]
    assert conf.benchmarks[0].batch_size == 1 and conf.benchmarks[2].max_new_tokens == 64
    assert conf.benchmarks[4].allow_code_execution is False


def test_config_errors_name_the_key(tmp_path, tiny_model_dir):
    bad = sft_config(tmp_path, tiny_model_dir, eval_conf={"benchmarks": [{"type": "mmlu"}, {"type": "human_eval"}]})
    with pytest.raises(ConfigError) as error:
        load_config(str(write_yaml(tmp_path / "bad.yaml", bad)))
    text = str(error.value)
    assert "eval_conf.benchmarks[0]: type must be 'lm_eval', 'exact_match' or 'human_eval'" in text
    assert "eval_conf.benchmarks[1].dataset: required key is missing" in text  # human_eval needs a local dataset


def test_missing_files_are_preflight_problems(tmp_path):
    present = write_jsonl(tmp_path / "ok.jsonl", [{"prompt": "a", "completion": "b"}])
    conf = EvalConfig.model_validate(
        {
            "benchmarks": [
                {"type": "lm_eval", "tasks": ["t"], "include_path": str(tmp_path / "no-tasks")},
                {"type": "exact_match", "dataset": str(present)},
                {"type": "human_eval", "dataset": str(tmp_path / "HumanEval.jsonl")},
            ]
        }
    )
    problems = eval_conf_problems(conf)
    assert len(problems) == 2
    assert problems[0].startswith("eval_conf.benchmarks[0].include_path:") and "no-tasks" in problems[0]
    assert problems[1].startswith("eval_conf.benchmarks[2].dataset:") and "not downloaded" in problems[1]


def test_a_missing_eval_dataset_stops_the_run_before_training(tmp_path, tiny_model_dir, capsys):
    config = sft_config(
        tmp_path, tiny_model_dir, eval_conf={"benchmarks": [{"type": "exact_match", "dataset": "nowhere.jsonl"}]}
    )
    assert cli_main(["validate", str(write_yaml(tmp_path / "c.yaml", config))]) == 2
    assert "eval_conf.benchmarks[0].dataset:" in capsys.readouterr().err


@pytest.mark.skipif(torch.cuda.is_available(), reason="the CPU-only error")
def test_liger_without_a_gpu_is_a_config_error_before_the_model_loads(tmp_path, tiny_model_dir, capsys):
    assert liger_problems({"use_liger_kernel": False}) == []
    problem = liger_problems({"use_liger_kernel": True})[0]
    assert problem.startswith("training_args.use_liger_kernel: liger kernels are Triton GPU kernels")
    assert "this machine has no CUDA GPU" in problem
    config = sft_config(tmp_path, tiny_model_dir, training_args={"use_liger_kernel": True})
    assert cli_main(["sft", str(write_yaml(tmp_path / "c.yaml", config))]) == 2
    err = capsys.readouterr().err
    assert "no CUDA GPU" in err
    assert not (tmp_path / "out" / "checkpoint-final").exists()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_liger_with_a_gpu_needs_the_package():
    from importlib.util import find_spec

    expected = [] if find_spec("liger_kernel") else ["pip install liger-kernel"]
    problems = liger_problems({"use_liger_kernel": True})
    assert len(problems) == len(expected) and all(e in p for e, p in zip(expected, problems, strict=True))
