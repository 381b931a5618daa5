"""The sectioned dialect's `evaluation` section: evaluation during training, and the benchmarks after it.

The seed lists benchmarks by name only (`- "lm-evaluation-harness"`); a name alone says neither which tasks nor which
data, and nothing is downloaded here, so each benchmark is a mapping with its name and what it needs:

```yaml
benchmarks:
  - {name: lm-evaluation-harness, tasks: [facts_qa], include_path: eval_tasks/}   # → eval_conf type lm_eval
  - {name: domain-specific-eval, dataset: data/heldout.jsonl}                    # → type exact_match
  - {name: human-eval, dataset: data/HumanEval.jsonl, allow_code_execution: true} # → type human_eval
```

Other keys of an entry are the native benchmark's own (docs/config: eval_conf), checked by the native validation
and reported at the entry's key.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from finetuning.config.dialects.axolotl_common import AxolotlBuilder, as_any, as_bool, as_int, one_of, option
from finetuning.config.dialects.builder import Key, section_key
from finetuning.errors import did_you_mean_or_choices

EV = "evaluation"
BENCHMARKS = {
    "lm-evaluation-harness": "lm_eval",
    "lm-eval-harness": "lm_eval",
    "lm_eval": "lm_eval",
    "domain-specific-eval": "exact_match",
    "human-eval": "human_eval",
}
NEEDS = {"lm_eval": "tasks", "exact_match": "dataset", "human_eval": "dataset"}
WHY = {
    "lm_eval": "the lm-evaluation-harness tasks to run, e.g. tasks: [facts_qa] with include_path: a directory of "
    "task YAML files over local data",
    "exact_match": "the domain's held-out questions, a JSONL of messages rows (the last assistant message is "
    "the reference answer)",
    "human_eval": "a local JSONL in the HumanEval layout (the hub dataset is not downloaded here)",
}


def _positive(b: AxolotlBuilder, path: str, value: Any) -> Any:
    return as_int(b, path, value, minimum=1)


EVAL_KEYS: tuple[Key, ...] = (
    section_key(EV),
    option(f"{EV}.do_eval", "false: `training_args.eval_strategy: no`; true needs dataset.eval_path", as_bool),
    option(f"{EV}.eval_batch_size", "`batchsize_conf.per_device_eval_batch_size`", _positive),
    option(
        f"{EV}.eval_strategy",
        "`training_args.eval_strategy` (default with dataset.eval_path: steps with eval_steps, else epoch)",
        one_of("steps", "epoch", "no"),
    ),
    option(f"{EV}.eval_steps", "`training_args.eval_steps` (as output.eval_steps)", _positive),
    option(
        f"{EV}.benchmarks",
        "`eval_conf.benchmarks`, run on the final model after it is saved: entries `{name, ...}` with name "
        "lm-evaluation-harness (or lm-eval-harness, lm_eval) → type lm_eval (needs tasks), domain-specific-eval → "
        "exact_match (needs dataset), human-eval → human_eval (needs a local dataset); a bare name is refused",
        as_any,
    ),
)


def build_evaluation(b: AxolotlBuilder, same_value) -> None:
    steps, steps_path = same_value(b, "output.eval_steps", f"{EV}.eval_steps")
    has_data = b.given("dataset.eval_path")
    do_eval = b.value(f"{EV}.do_eval", has_data)
    strategy = b.value(f"{EV}.eval_strategy")
    if do_eval and not has_data:
        b.problem(f"{EV}.do_eval", "true needs evaluation data: set dataset.eval_path (a JSONL file)")
    if not do_eval or strategy == "no":
        if has_data or b.given(f"{EV}.do_eval"):
            b.set("training_args.eval_strategy", "no", source=f"{EV}.do_eval" if not do_eval else f"{EV}.eval_strategy")
    elif has_data:
        strategy = strategy or ("steps" if steps is not None else "epoch")
        b.set("training_args.eval_strategy", strategy, source=f"{EV}.eval_strategy")
        if steps is not None:
            b.set("training_args.eval_steps", steps, source=steps_path)
    if b.given(f"{EV}.eval_batch_size"):
        b.set(
            "batchsize_conf.per_device_eval_batch_size",
            b.value(f"{EV}.eval_batch_size"),
            source=f"{EV}.eval_batch_size",
        )
    if b.given(f"{EV}.benchmarks"):
        _benchmarks(b, b.value(f"{EV}.benchmarks"))


def _benchmarks(b: AxolotlBuilder, value: Any) -> None:
    path = f"{EV}.benchmarks"
    if not isinstance(value, list) or not value:
        b.problem(path, f"must be a list of benchmarks ({{name: ..., ...}} each), got {value!r}")
        return
    native = [benchmark for i, entry in enumerate(value) if (benchmark := _benchmark(b, f"{path}[{i}]", entry))]
    if len(native) == len(value):  # native problems at eval_conf.benchmarks[i].key are reported at path[i].key
        b.set("eval_conf.benchmarks", native, source=path)


def _benchmark(b: AxolotlBuilder, path: str, entry: Any) -> dict[str, Any] | None:
    name = entry.get("name") if isinstance(entry, Mapping) else entry
    if not isinstance(name, str) or name not in BENCHMARKS:
        choices = did_you_mean_or_choices(str(name), BENCHMARKS)
        b.problem(path, f"unknown benchmark {name!r}{choices}; an entry is {{name: ..., ...}}")
        return None
    kind = BENCHMARKS[name]
    if not isinstance(entry, Mapping) or NEEDS[kind] not in entry:
        b.problem(
            path,
            f"{name}: needs {NEEDS[kind]}: {WHY[kind]}; write the entry as {{name: {name}, {NEEDS[kind]}: ...}}",
        )
        return None
    out = {"type": kind, **{key: item for key, item in entry.items() if key != "name"}}
    if kind == "exact_match":
        out.setdefault("name", name)
    return out
