"""An adapter run is merged for its benchmarks; a benchmark that fails at run time is reported, the others run, the
model stays and the run exits 0; the numbers reach MLflow as eval/<benchmark>/<metric>. Plus human_eval's programs."""

from __future__ import annotations

import json
import os

import pytest

from finetuning.cli import main as cli_main
from finetuning.evaluation.human_eval import passes, program
from tests.conftest import sft_config, write_jsonl, write_yaml

ADD = {"task_id": "t/add", "prompt": "def add(a, b):\n", "test": "def check(f):\n    assert f(2, 3) == 5\n"}


def test_human_eval_programs_pass_fail_and_time_out():
    problem = {**ADD, "entry_point": "add"}
    body = program(problem, "    return a + b\n")
    assert body.startswith("def add(a, b):\n    return a + b") and body.endswith("check(add)\n")
    assert passes(body, 10) == (True, "")
    fenced = program(problem, "Here:\n```python\ndef add(a, b):\n    return a - b\n```\n")
    assert fenced.startswith("def add(a, b):\n    return a - b")  # the model's own def, no prompt in front
    ok, error = passes(fenced, 10)
    assert not ok and "AssertionError" in error
    assert passes(program(problem, "    while True:\n        pass\n"), 0.5) == (False, "timed out after 0.5s")


@pytest.mark.slow
def test_an_adapter_run_with_a_failing_benchmark(tmp_path, tiny_model_dir):
    rows = [{"prompt": f"Name {i}?", "completion": f"Name {i} is Lomi."} for i in range(4)]
    data = write_jsonl(
        tmp_path / "pc.jsonl",
        [
            {"messages": [{"role": "user", "content": r["prompt"]}, {"role": "assistant", "content": r["completion"]}]}
            for r in rows
        ],
    )
    heldout = write_jsonl(tmp_path / "heldout.jsonl", rows)
    human = write_jsonl(tmp_path / "he.jsonl", [{**ADD, "entry_point": "add"}])
    tasks = tmp_path / "tasks"
    tasks.mkdir()
    uri = (tmp_path / "mlruns").as_uri()
    config = sft_config(
        tmp_path,
        tiny_model_dir,
        data=data,
        training_args={"max_steps": 10},
        peft_conf={
            "peft_type": "LORA",
            "peft_kwargs": {"r": 4, "lora_alpha": 8, "target_modules": ["q_proj", "v_proj"]},
        },
        tracking={"mlflow_server_uri": uri, "experiment_name": "evals"},
        eval_conf={
            "benchmarks": [
                {"type": "lm_eval", "tasks": ["no_such_task"], "include_path": str(tasks)},
                {"type": "exact_match", "dataset": str(heldout), "name": "heldout", "max_new_tokens": 8},
                {"type": "human_eval", "dataset": str(human), "allow_code_execution": True, "max_new_tokens": 16},
            ]
        },
    )
    del config["training_args"]["report_to"]
    assert cli_main(["sft", str(write_yaml(tmp_path / "c.yaml", config))]) == 0
    out = tmp_path / "out"
    assert (out / "checkpoint-final" / "adapter_config.json").is_file()  # the trained adapter is kept
    assert not list(out.glob(".eval-merged-*"))  # the merged copy is removed
    results = json.loads((out / "eval_results.json").read_text())
    assert results["merged_adapter"] is True
    failed = results["benchmarks"]["lm_eval"]
    assert failed["status"] == "failed" and "no_such_task" in failed["error"] and failed["metrics"] == {}
    heldout_result = results["benchmarks"]["heldout"]
    assert heldout_result["status"] == "ok" and heldout_result["metrics"]["total"] == 4
    human_result = results["benchmarks"]["human_eval"]
    assert human_result["status"] == "ok" and human_result["metrics"]["total"] == 1
    assert results["failed"] == ["lm_eval"]

    import mlflow

    os.environ["MLFLOW_ALLOW_FILE_STORE"] = "true"
    client = mlflow.MlflowClient(tracking_uri=uri)
    (run,) = client.search_runs([client.get_experiment_by_name("evals").experiment_id])
    assert run.data.metrics["eval/heldout/exact_match"] == heldout_result["metrics"]["exact_match"]
    assert run.data.metrics["eval/human_eval/pass_at_1"] == human_result["metrics"]["pass_at_1"]
    assert "eval/lm_eval/no_such_task" not in str(run.data.metrics)
    assert "eval_results.json" in {artifact.path for artifact in client.list_artifacts(run.info.run_id)}


@pytest.mark.slow
def test_dpo_runs_its_benchmarks_too(tmp_path, tiny_model_dir):
    """The DPO recipe evaluates after its save as SFT does (same stage); the tiny base is trained with chat-ml first."""
    from tests.e2e.test_dpo import dpo_config

    sft = sft_config(tmp_path / "sft", tiny_model_dir, training_args={"max_steps": 5})
    assert cli_main(["sft", str(write_yaml(tmp_path / "sft.yaml", sft))]) == 0
    heldout = write_jsonl(tmp_path / "heldout.jsonl", [{"prompt": "Capital of Tusello?", "completion": "Yorren."}])
    config = dpo_config(
        tmp_path,
        tmp_path / "sft" / "out" / "checkpoint-final",
        training_args={"max_steps": 3},
        eval_conf={"benchmarks": [{"type": "exact_match", "dataset": str(heldout), "max_new_tokens": 8}]},
    )
    assert cli_main(["dpo", str(write_yaml(tmp_path / "dpo.yaml", config))]) == 0
    results = json.loads((tmp_path / "out" / "eval_results.json").read_text())
    assert results["benchmarks"]["exact_match_heldout"]["metrics"]["total"] == 1
    assert "## Evaluation" in (tmp_path / "out" / "summary.md").read_text()
