"""`eval_conf`: benchmarks run on the final model after the final save (evaluation/ runs them).

```yaml
eval_conf:
  benchmarks:
    - {type: lm_eval, tasks: [facts_qa], include_path: eval_tasks/, limit: 20}
    - {type: exact_match, dataset: data/heldout.jsonl, max_new_tokens: 64}
    - {type: human_eval, dataset: data/HumanEval.jsonl, allow_code_execution: true}
```

Each benchmark is independent: one that fails is reported (logged, and in `eval_results.json` with its error) and
the others still run; the trained model is saved before any of them starts, and a failed benchmark never fails the
run (the command exits 0 with a warning). Nothing is downloaded: datasets are local files, lm_eval tasks are YAML
files (`include_path`) over local data, or built-in tasks whose data is already in the local Hugging Face cache.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Discriminator, Field, Tag

from finetuning.config._base import Float, Int, StrictModel

DEFAULT_EXACT_MATCH_TOKENS = 64
DEFAULT_HUMAN_EVAL_TOKENS = 256
DEFAULT_HUMAN_EVAL_TIMEOUT = 10.0


class LmEvalBenchmark(StrictModel):
    """lm-evaluation-harness tasks, through `lm_eval.simple_evaluate` on the final model (`pip install '.[eval]'`)."""

    type: Literal["lm_eval"] = Field(description="Selects lm-evaluation-harness.")
    tasks: list[str] = Field(min_length=1, description="Task (or group) names, e.g. defined in include_path.")
    include_path: str | None = Field(
        None,
        description=(
            "A directory (or YAML file) of task definitions of your own, e.g. `dataset_path: json` with "
            "`dataset_kwargs: {data_files: ...}` over a local JSONL; relative paths resolve against the working "
            "directory. Tasks not found there are looked up among lm_eval's built-in tasks, whose data must be in "
            "the local Hugging Face cache (nothing is downloaded offline)."
        ),
    )
    num_fewshot: Annotated[Int, Field(ge=0)] | None = Field(
        None, description="Few-shot examples (default: the task's)."
    )
    limit: Annotated[Float, Field(gt=0)] | None = Field(
        None, description="Examples per task: a count (>= 1) or a fraction of the task (< 1). Default: all."
    )
    batch_size: Int = Field(1, ge=1, description="lm_eval's batch size.")

    @property
    def label(self) -> str:
        return "lm_eval"


class ExactMatchBenchmark(StrictModel):
    """Greedy generation (the `generate` tool's code) over a dataset; accuracy = answer == reference, both stripped."""

    type: Literal["exact_match"] = Field(description="Selects exact-match accuracy of generated answers.")
    dataset: str = Field(
        description=(
            "JSONL: SFT `messages` rows (the final assistant message is the reference, everything before it the "
            "prompt), `prompt_messages` rows with `correct_answers`, or `prompt` / `completion` rows (strings, or "
            "lists of messages). Relative paths resolve against the working directory."
        )
    )
    max_new_tokens: Int = Field(DEFAULT_EXACT_MATCH_TOKENS, ge=1, description="Longest answer generated.")
    name: str | None = Field(
        None, description="Name of the benchmark in the results and metrics (default: exact_match_<file stem>)."
    )

    @property
    def label(self) -> str:
        if self.name:
            return self.name
        from pathlib import PurePath

        return f"exact_match_{PurePath(self.dataset).stem}"


class HumanEvalBenchmark(StrictModel):
    """HumanEval-style pass@1: generate each problem's completion, run its unit tests (`allow_code_execution`)."""

    type: Literal["human_eval"] = Field(description="Selects HumanEval-style code generation with unit tests.")
    dataset: str = Field(
        description=(
            "Local JSONL in the HumanEval layout (task_id, prompt, test, entry_point); required: the hub dataset is "
            "not downloaded here."
        )
    )
    allow_code_execution: bool = Field(
        False,
        description=(
            "Run the generated programs. They are untrusted code: without true the benchmark is refused (reported "
            "as failed, with this reason). With true each program runs in a separate Python process with a timeout; "
            "that is no sandbox: run it only on a machine where that is acceptable."
        ),
    )
    limit: Annotated[Int, Field(ge=1)] | None = Field(None, description="Problems to run (default: all).")
    max_new_tokens: Int = Field(DEFAULT_HUMAN_EVAL_TOKENS, ge=1, description="Longest completion generated.")
    timeout: Annotated[Float, Field(gt=0)] = Field(
        DEFAULT_HUMAN_EVAL_TIMEOUT, description="Seconds each program may run before it counts as failed."
    )

    @property
    def label(self) -> str:
        return "human_eval"


def _benchmark_type(value):
    return value.get("type") if isinstance(value, dict) else getattr(value, "type", None)


Benchmark = Annotated[
    Annotated[LmEvalBenchmark, Tag("lm_eval")]
    | Annotated[ExactMatchBenchmark, Tag("exact_match")]
    | Annotated[HumanEvalBenchmark, Tag("human_eval")],
    Discriminator(
        _benchmark_type,
        custom_error_type="benchmark_type",
        custom_error_message="type must be 'lm_eval', 'exact_match' or 'human_eval'",
    ),
]


class EvalConfig(StrictModel):
    """Benchmarks run on the final model once it is saved; results go to output_dir/eval_results.json."""

    benchmarks: list[Benchmark] = Field(
        min_length=1, description="The benchmarks, run in this order; a failing one is reported and skipped."
    )

    def labels(self) -> list[str]:
        """The benchmarks' names in the results, made unique (a second `lm_eval` is `lm_eval_2`)."""
        seen: dict[str, int] = {}
        labels = []
        for benchmark in self.benchmarks:
            label = benchmark.label
            seen[label] = seen.get(label, 0) + 1
            labels.append(label if seen[label] == 1 else f"{label}_{seen[label]}")
        return labels
