"""eval_conf end to end on the tiny model (CPU, offline): lm_eval over a local YAML task and JSONL, exact match with
the generate tool's answers, a failing benchmark that leaves the model and the exit code alone, the summary."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from finetuning.cli import main as cli_main
from finetuning.tools.generate import main as generate_main
from tests.conftest import FACTS, sft_config, write_jsonl, write_yaml

TASK_YAML = """\
task: facts_qa
dataset_path: json
dataset_kwargs:
  data_files:
    test: {data}
test_split: test
output_type: generate_until
doc_to_text: "Q: {{{{question}}}}\\nA:"
doc_to_target: "{{{{answer}}}}"
generation_kwargs:
  until: ["\\n"]
  max_gen_toks: 8
  do_sample: false
metric_list:
  - metric: exact_match
    aggregation: mean
    higher_is_better: true
"""


def lm_eval_task(tmp_path: Path) -> Path:
    """A directory with one lm_eval task over a local JSONL of 4 questions."""
    rows = [{"question": f"What is the capital of land {i}?", "answer": f"City {i}"} for i in range(4)]
    data = write_jsonl(tmp_path / "qa.jsonl", rows)
    tasks = tmp_path / "tasks"
    tasks.mkdir()
    (tasks / "facts_qa.yaml").write_text(TASK_YAML.format(data=data), encoding="utf-8")
    return tasks


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory, tiny_model_dir):
    """A short SFT run with three benchmarks: lm_eval, exact_match over 6 facts, and human_eval (refused: no
    allow_code_execution). Returns (tmp dir, exit code, facts file)."""
    tmp_path = tmp_path_factory.mktemp("evaluation")
    facts = write_jsonl(tmp_path / "facts6.jsonl", [json.loads(line) for line in FACTS.read_text().splitlines()[:6]])
    human = write_jsonl(
        tmp_path / "humaneval.jsonl",
        [
            {
                "task_id": "t/0",
                "prompt": "def f():\n",
                "test": "def check(c):\n    assert c() == 1\n",
                "entry_point": "f",
            }
        ],
    )
    config = sft_config(
        tmp_path,
        tiny_model_dir,
        data=facts,
        training_args={"max_steps": 40},
        eval_conf={
            "benchmarks": [
                {"type": "lm_eval", "tasks": ["facts_qa"], "include_path": str(lm_eval_task(tmp_path)), "limit": 4},
                {"type": "exact_match", "dataset": str(facts), "max_new_tokens": 24},
                {"type": "human_eval", "dataset": str(human)},
            ]
        },
    )
    code = cli_main(["sft", str(write_yaml(tmp_path / "sft.yaml", config))])
    return tmp_path, code, facts


@pytest.mark.slow
def test_benchmarks_run_after_the_final_save(evaluated):
    tmp_path, code, _ = evaluated
    out = tmp_path / "out"
    assert code == 0  # human_eval failed (refused), the run did not
    assert (out / "checkpoint-final" / "model.safetensors").is_file()
    results = json.loads((out / "eval_results.json").read_text())
    assert list(results["benchmarks"]) == ["lm_eval", "exact_match_facts6", "human_eval"]
    lm = results["benchmarks"]["lm_eval"]
    assert lm["status"] == "ok" and lm["error"] is None
    assert 0.0 <= lm["metrics"]["facts_qa/exact_match"] <= 1.0
    assert lm["n_samples"]["facts_qa"]["effective"] == 4
    em = results["benchmarks"]["exact_match_facts6"]
    assert em["status"] == "ok" and em["metrics"]["total"] == 6
    assert em["metrics"]["exact_match"] == em["metrics"]["correct"] / 6
    human = results["benchmarks"]["human_eval"]
    assert human["status"] == "failed" and "allow_code_execution: true" in human["error"]
    assert results["failed"] == ["human_eval"]


@pytest.mark.slow
def test_exact_match_scores_what_the_generate_tool_answers(evaluated, tmp_path):
    """Greedy decoding is deterministic: the benchmark's answers are the generate tool's, scored answer == reference."""
    run_dir, _, facts = evaluated
    model = run_dir / "out" / "checkpoint-final"
    document = {
        "model_conf": {"model": str(model)},
        "prompt_conf": {"type": "eval-data", "data": {"path": str(facts)}},
        "hf_gen_params": {"max_new_tokens": 24},
    }
    assert generate_main([str(write_yaml(tmp_path / "gen.yaml", document)), str(tmp_path / "answers.yaml")]) == 0
    expected = yaml.safe_load((tmp_path / "answers.yaml").read_text())
    details = yaml.safe_load((run_dir / "out" / "eval" / "exact_match_facts6.yaml").read_text())
    assert [item["answer"] for item in details] == [item["answer"] for item in expected]
    references = [json.loads(line)["messages"][-1]["content"] for line in facts.read_text().splitlines()]
    hits = sum(item["answer"].strip() == ref.strip() for item, ref in zip(expected, references, strict=True))
    results = json.loads((run_dir / "out" / "eval_results.json").read_text())
    assert results["benchmarks"]["exact_match_facts6"]["metrics"]["correct"] == hits
    assert hits > 0  # 40 steps on 6 facts: the tiny model recalls some of them


@pytest.mark.slow
def test_summary_has_an_evaluation_section(evaluated):
    summary = (evaluated[0] / "out" / "summary.md").read_text()
    section = summary.split("## Evaluation", 1)[1].split("## Outputs", 1)[0]
    assert "| lm_eval | lm_eval | facts_qa/exact_match" in section
    assert "| exact_match_facts6 | exact_match | exact_match " in section
    assert "| human_eval | human_eval | failed: CodeExecutionRefused: refused" in section
    assert "eval_results.json" in section
