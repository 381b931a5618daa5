"""Running `eval_conf` on a saved model: each benchmark on its own, results to `output_dir/eval_results.json`.

The model is saved before this starts and nothing here touches it. A benchmark that fails (a missing library, a
task lm_eval does not know, an out-of-memory, human_eval refused) is logged as a warning and recorded with its
error; the other benchmarks still run and the run still succeeds (exit 0): the training is what the command was
for, and its model is there to evaluate again. An adapter is merged into its base first (tools/merge_adapter.py),
into a temporary directory inside output_dir that is removed afterwards: the benchmarks load one plain model.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

from ..config.evaluation import EvalConfig

logger = logging.getLogger(__name__)

EVAL_RESULTS_FILE = "eval_results.json"
_METRIC_NAME = re.compile(r"[^\w\-. :/]")  # characters MLflow refuses in a metric name
DETAILS_DIR = "eval"  # output_dir/eval/<benchmark>.yaml: the generated answers of exact_match / human_eval


def is_adapter(model_dir: Path) -> bool:
    return (model_dir / "adapter_config.json").is_file()


@contextmanager
def plain_model(final_dir: Path, base_model: str, scratch_parent: Path):
    """The directory of a plain model for `final_dir`: itself, or an adapter merged onto `base_model` (removed
    when the block ends)."""
    if not is_adapter(final_dir):
        yield final_dir
        return
    from ..tools.merge_adapter import merge_adapter

    scratch = Path(tempfile.mkdtemp(prefix=".eval-merged-", dir=scratch_parent))
    try:
        logger.info("evaluation: merging the adapter %s into %s for the benchmarks", final_dir, base_model)
        yield merge_adapter(base_model, str(final_dir), str(scratch / "model"))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _run_one(benchmark, model_dir: Path, details_path: Path) -> dict:
    if benchmark.type == "lm_eval":
        from .lm_eval_runner import run_lm_eval

        return run_lm_eval(benchmark, model_dir)
    details_path.parent.mkdir(parents=True, exist_ok=True)
    if benchmark.type == "exact_match":
        from .exact_match import run_exact_match

        return run_exact_match(benchmark, model_dir, details_path)
    from .human_eval import run_human_eval

    return run_human_eval(benchmark, model_dir, details_path)


def _failure(error: BaseException) -> str:
    text = str(error).strip()
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def run_benchmarks(eval_conf: EvalConfig, final_dir: Path, base_model: str, output_dir: Path) -> dict:
    """Every benchmark of `eval_conf` on the model saved in `final_dir`; returns the results (also written to
    output_dir/eval_results.json). Never raises for a benchmark's failure: it is in the results."""
    started = time.perf_counter()
    labels = eval_conf.labels()
    benchmarks: dict[str, dict] = {}
    try:
        with plain_model(final_dir, base_model, output_dir) as model_dir:
            for label, benchmark in zip(labels, eval_conf.benchmarks, strict=True):
                benchmarks[label] = _timed(label, benchmark, model_dir, output_dir / DETAILS_DIR / f"{label}.yaml")
    except Exception as error:  # the merge failed: every benchmark not run is failed with that reason
        logger.warning("evaluation: could not prepare the model %s: %s", final_dir, _failure(error))
        for label, benchmark in zip(labels, eval_conf.benchmarks, strict=True):
            benchmarks.setdefault(label, _failed(benchmark, f"model not prepared: {_failure(error)}", 0.0))
    failed = [label for label, result in benchmarks.items() if result["status"] == "failed"]
    results = {
        "model": str(final_dir),
        "merged_adapter": is_adapter(final_dir),
        "seconds": round(time.perf_counter() - started, 3),
        "benchmarks": benchmarks,
        "failed": failed,
    }
    write_results(results, output_dir / EVAL_RESULTS_FILE)
    if failed:
        logger.warning(
            "evaluation: %d of %d benchmark(s) failed (%s); the trained model is saved in %s and the run succeeds; "
            "details in %s",
            len(failed),
            len(benchmarks),
            ", ".join(failed),
            final_dir,
            output_dir / EVAL_RESULTS_FILE,
        )
    return results


def _failed(benchmark, error: str, seconds: float) -> dict:
    return {"type": benchmark.type, "status": "failed", "error": error, "metrics": {}, "seconds": seconds}


def _timed(label: str, benchmark, model_dir: Path, details_path: Path) -> dict:
    logger.info("evaluation: running %s (%s)", label, benchmark.type)
    start = time.perf_counter()
    try:
        outcome = _run_one(benchmark, model_dir, details_path)
    except Exception as error:  # noqa: BLE001 - any failure of one benchmark is its result, not the run's
        seconds = round(time.perf_counter() - start, 3)
        logger.warning("evaluation: benchmark %s failed: %s", label, _failure(error))
        return _failed(benchmark, _failure(error), seconds)
    seconds = round(time.perf_counter() - start, 3)
    metrics = outcome.pop("metrics")
    logger.info("evaluation: %s: %s", label, ", ".join(f"{key} {value:.4g}" for key, value in metrics.items()))
    return {"type": benchmark.type, "status": "ok", "error": None, "metrics": metrics, "seconds": seconds, **outcome}


def write_results(results: dict, path: Path) -> None:
    """eval_results.json, atomically (a reader never sees half a file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as stream:
            json.dump(results, stream, indent=2, default=str)
            stream.write("\n")
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise


def tracked_metrics(results: dict) -> dict[str, float]:
    """`eval/<benchmark>/<metric>` for MLflow and W&B (the successful benchmarks' numbers)."""
    return {
        _METRIC_NAME.sub("_", f"eval/{label}/{metric}"): float(value)
        for label, result in results["benchmarks"].items()
        for metric, value in result["metrics"].items()
    }
