"""What can be checked of `eval_conf` before the model loads (train/preflight.py): a misconfigured benchmark found
after hours of training would be found too late. Data files and include_path must exist, lm_eval must be installed
for lm_eval benchmarks. Whether a task name exists, and human_eval's code execution, are decided when it runs."""

from __future__ import annotations

from ..paths import resolve_user_path


def eval_conf_problems(eval_conf) -> list[str]:
    if eval_conf is None:
        return []
    problems = []
    for index, benchmark in enumerate(eval_conf.benchmarks):
        key = f"eval_conf.benchmarks[{index}]"
        if benchmark.type == "lm_eval":
            from .lm_eval_runner import INSTALL_HINT, lm_eval_installed

            if not lm_eval_installed():
                problems.append(f"{key}.type: {INSTALL_HINT}")
            if benchmark.include_path and not resolve_user_path(benchmark.include_path).exists():
                problems.append(
                    f"{key}.include_path: {resolve_user_path(benchmark.include_path)}: no such file or directory"
                )
        elif not resolve_user_path(benchmark.dataset).is_file():
            hint = " (the hub dataset is not downloaded: give a local JSONL)" if benchmark.type == "human_eval" else ""
            problems.append(f"{key}.dataset: {resolve_user_path(benchmark.dataset)}: no such file{hint}")
    return problems
