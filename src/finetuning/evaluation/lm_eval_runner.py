"""`type: lm_eval`: lm-evaluation-harness tasks via its Python API (`lm_eval.simple_evaluate`) on the final model.

The model is loaded here, as the `generate` tool loads it, and handed to lm_eval's HF wrapper as an object: lm_eval
then makes no distributed set-up of its own (the training's processes are done; evaluation runs in the main one)
and loads nothing from the hub. Tasks come from `include_path` (YAML over local data) and, for names not defined
there, from lm_eval's built-in tasks, whose data must already be in the local Hugging Face cache.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

from ..config.evaluation import LmEvalBenchmark
from ..errors import UserError
from ..paths import resolve_user_path
from .generation import free_accelerator_memory, load_for_evaluation

logger = logging.getLogger(__name__)

_NOT_METRICS = {"alias", "sample_len", "sample_count"}  # bookkeeping in lm_eval's results
INSTALL_HINT = "lm_eval benchmarks need lm-evaluation-harness: pip install 'finetuning[eval]' (lm-eval==0.4.13)"


def lm_eval_installed() -> bool:
    from importlib.util import find_spec

    return find_spec("lm_eval") is not None


def task_manager(benchmark: LmEvalBenchmark):
    """lm_eval's task index: only `include_path` when it defines every task asked for (indexing the few hundred
    built-in tasks takes seconds), else include_path plus the built-in tasks. Unknown task names are a UserError."""
    from lm_eval.tasks import TaskManager

    include = str(resolve_user_path(benchmark.include_path)) if benchmark.include_path else None
    if include is not None:
        own = TaskManager(include_path=include, include_defaults=False)
        if set(benchmark.tasks) <= set(own.all_tasks):
            return own
    manager = TaskManager(include_path=include)
    unknown = [task for task in benchmark.tasks if task not in manager.all_tasks]
    if unknown:
        where = f" (include_path: {include})" if include else " (no include_path set)"
        raise UserError(f"tasks: {unknown} are neither lm_eval built-in tasks nor defined in include_path{where}")
    return manager


def flatten_results(results: dict) -> dict[str, float]:
    """lm_eval's `results` ({task: {"acc,none": 0.5, "acc_stderr,none": ...}}) as {"task/acc": 0.5, ...}: numbers
    only, the default filter's ",none" dropped, other filters kept as a suffix ("task/exact_match_strict-match")."""
    flat: dict[str, float] = {}
    for task, metrics in results.items():
        for key, value in metrics.items():
            if key in _NOT_METRICS or isinstance(value, bool) or not isinstance(value, int | float):
                continue
            if isinstance(value, float) and math.isnan(value):
                continue
            metric, _, filter_name = key.partition(",")
            name = metric if filter_name in ("", "none") else f"{metric}_{filter_name}"
            flat[f"{task}/{name}"] = float(value)
    return flat


def run_lm_eval(benchmark: LmEvalBenchmark, model_dir: Path) -> dict:
    """{"metrics": {"task/metric": value}, "versions": ..., "n_samples": ...} of lm_eval on the model in model_dir."""
    if not lm_eval_installed():
        raise UserError(INSTALL_HINT)
    import lm_eval
    from lm_eval.models.huggingface import HFLM

    manager = task_manager(benchmark)
    model, tokenizer = load_for_evaluation(model_dir)
    try:
        wrapped = HFLM(pretrained=model, tokenizer=tokenizer, batch_size=benchmark.batch_size)
        limit = benchmark.limit
        if limit is not None and limit >= 1:
            limit = int(limit)  # lm_eval reads a float as a fraction of the task
        output = lm_eval.simple_evaluate(
            model=wrapped,
            tasks=list(benchmark.tasks),
            num_fewshot=benchmark.num_fewshot,
            limit=limit,
            task_manager=manager,
            log_samples=False,
            bootstrap_iters=0,  # no stderr resampling: seconds per metric on large tasks, and not reported here
        )
    finally:
        del model
        free_accelerator_memory()
    if output is None:  # lm_eval returns None on non-zero ranks only
        raise RuntimeError("lm_eval returned no results")
    return {
        "metrics": flatten_results(output.get("results", {})),
        "versions": {task: str(version) for task, version in (output.get("versions") or {}).items()},
        "n_samples": output.get("n-samples", {}),
    }
