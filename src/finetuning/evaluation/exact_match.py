"""`type: exact_match`: greedy answers to a dataset's prompts; accuracy = the share of answers equal to a reference
(both stripped of surrounding whitespace). The answers are written next to the results, to be read."""

from __future__ import annotations

from pathlib import Path

from ..config.evaluation import ExactMatchBenchmark
from ..data.readers import check_messages, read_rows
from ..paths import resolve_user_path
from ..tools.generate import Prompt, eval_row_problem, write_yaml_atomic
from .generation import generate_answers


def _as_messages(value, role: str) -> list[dict]:
    return [{"role": role, "content": value}] if isinstance(value, str) else value


def row_problem(row: dict) -> str | None:
    """`prompt` / `completion` rows (strings or message lists), else what the `generate` tool reads (messages rows
    ending with the reference answer, or prompt_messages rows with correct_answers)."""
    if "prompt" in row or "completion" in row:
        if "prompt" not in row or "completion" not in row:
            return "a prompt/completion row needs both 'prompt' and 'completion'"
        for key in ("prompt", "completion"):
            if not isinstance(row[key], str) and (problem := check_messages(row[key], key)):
                return problem
        return None
    if problem := eval_row_problem(row):
        return problem
    if "prompt_messages" in row and not row.get("correct_answers"):
        return "a prompt_messages row needs 'correct_answers' to be scored"
    return None


def read_scored_prompts(path: str) -> list[Prompt]:
    """Every row of the dataset as a prompt with its reference answer(s); bad rows are a DataError (file:line)."""
    dataset = resolve_user_path(path).stem
    prompts = []
    for index, row in enumerate(read_rows(path, row_problem)):
        if "prompt" in row:
            messages = _as_messages(row["prompt"], "user")
            completion = _as_messages(row["completion"], "assistant")
            answers = ["".join(message["content"] for message in completion)]
        elif "prompt_messages" in row:
            messages, answers = row["prompt_messages"], row["correct_answers"]
        else:
            messages, answers = row["messages"][:-1], [row["messages"][-1]["content"]]
        prompts.append(Prompt(str(row.get("dataset", dataset)), str(row.get("id", index)), messages, answers, path))
    return prompts


def is_exact_match(answer: str, references: list[str]) -> bool:
    return answer.strip() in {reference.strip() for reference in references}


def run_exact_match(benchmark: ExactMatchBenchmark, model_dir: Path, details_path: Path) -> dict:
    """{"metrics": {"exact_match", "correct", "total"}, "details": file of the answers}."""
    prompts = read_scored_prompts(benchmark.dataset)
    if not prompts:
        raise ValueError(f"dataset: {resolve_user_path(benchmark.dataset)} has no rows")
    items = generate_answers(model_dir, prompts, benchmark.max_new_tokens)
    for item in items:
        item["exact_match"] = is_exact_match(item["answer"], item["correct_answers"])
    write_yaml_atomic(items, str(details_path))
    correct = sum(item["exact_match"] for item in items)
    return {
        "metrics": {"exact_match": correct / len(items), "correct": correct, "total": len(items)},
        "details": str(details_path),
    }
