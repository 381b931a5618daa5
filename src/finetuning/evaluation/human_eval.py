"""`type: human_eval`: HumanEval-style pass@1 over a local JSONL (task_id, prompt, test, entry_point).

What it runs: each problem's `prompt` (a function signature and docstring) is sent as a user message asking for the
completed function; the greedy answer (code fences removed; the prompt put in front unless the answer defines the
entry point itself) plus the problem's `test` and `check(<entry_point>)` is one program. Each program runs in a
fresh `python -I` process in an empty temporary directory, killed after `timeout` seconds; it passes when it exits
0. pass_at_1 (pass@1) = passed / problems.

That is untrusted, model-written code run on this machine, with this user's rights; a subprocess and a timeout
are no sandbox. So nothing runs unless `allow_code_execution: true`: without it the benchmark is refused (reported
as failed, with the reason) before the model is even loaded.
"""

from __future__ import annotations

import re
import subprocess
import sys
import tempfile
from pathlib import Path

from ..config.evaluation import HumanEvalBenchmark
from ..data.readers import read_rows
from ..tools.generate import Prompt, write_yaml_atomic
from .generation import generate_answers

FIELDS = ("task_id", "prompt", "test", "entry_point")
INSTRUCTION = "Complete the following Python function. Answer with the complete function in Python code only.\n\n"
REFUSAL = (
    "refused: human_eval runs the generated programs, which is executing untrusted model-written code on this machine "
    "(a subprocess with a timeout is no sandbox); set allow_code_execution: true on this benchmark to run it anyway"
)
_FENCE = re.compile(r"```(?:python|py)?\s*\n(.*?)(?:```|$)", re.DOTALL)


class CodeExecutionRefused(RuntimeError):
    """human_eval without allow_code_execution: a benchmark refused, not a crash."""


def row_problem(row: dict) -> str | None:
    missing = [field for field in FIELDS if not isinstance(row.get(field), str)]
    return f"a HumanEval row needs string fields {list(FIELDS)}; missing or not text: {missing}" if missing else None


def program(problem: dict, answer: str) -> str:
    """The program that runs for one problem: the completed function, the problem's tests, the call of `check`."""
    fenced = _FENCE.search(answer)
    code = fenced.group(1) if fenced else answer
    if not re.search(rf"^\s*def\s+{re.escape(problem['entry_point'])}\s*\(", code, re.MULTILINE):
        code = problem["prompt"] + code  # a bare body: complete the prompt's function
    return f"{code}\n\n{problem['test']}\n\ncheck({problem['entry_point']})\n"


def passes(source: str, timeout: float) -> tuple[bool, str]:
    """Run one program in an isolated interpreter (-I: no user site, no PYTHON* variables) in an empty directory."""
    with tempfile.TemporaryDirectory(prefix="human-eval-") as workdir:
        try:
            done = subprocess.run(
                [sys.executable, "-I", "-c", source],
                cwd=workdir,
                capture_output=True,
                text=True,
                timeout=timeout,
                stdin=subprocess.DEVNULL,
            )
        except subprocess.TimeoutExpired:
            return False, f"timed out after {timeout:g}s"
    return done.returncode == 0, done.stderr.strip().splitlines()[-1] if done.returncode and done.stderr else ""


def run_human_eval(benchmark: HumanEvalBenchmark, model_dir: Path, details_path: Path) -> dict:
    """{"metrics": {"pass_at_1", "passed", "total"}, "details": file of the programs and outcomes}."""
    if not benchmark.allow_code_execution:
        raise CodeExecutionRefused(REFUSAL)
    problems = read_rows(benchmark.dataset, row_problem)[: benchmark.limit]
    if not problems:
        raise ValueError(f"dataset: {benchmark.dataset} has no problems")
    prompts = [
        Prompt("human_eval", p["task_id"], [{"role": "user", "content": INSTRUCTION + p["prompt"]}], None, "human_eval")
        for p in problems
    ]
    items = generate_answers(model_dir, prompts, benchmark.max_new_tokens)
    for problem, item in zip(problems, items, strict=True):
        item["program"] = program(problem, item["answer"])
        item["passed"], item["error"] = passes(item["program"], benchmark.timeout)
    write_yaml_atomic(items, str(details_path))
    passed = sum(item["passed"] for item in items)
    return {
        "metrics": {"pass_at_1": passed / len(items), "passed": passed, "total": len(items)},
        "details": str(details_path),
    }
