"""Benchmark: the engine's SFT (`finetuning.sft.run_sft`) against plain TRL `SFTTrainer`, same process, same work.

Both sides train the same tiny local Llama on examples/data/facts.jsonl with the chat-ml template, full-sequence loss,
identical hyper-parameters and seed. Printed:

* wall time of the training loop (`trainer.train()` only) for each side and the ratio ours / TRL (target <= 1.05);
* one-time start-up (config parsing, data preparation, model load, trainer construction) for each side, and our
  extra tail after training (final save), reported separately;
* the loss at the last step on each side and their |difference| (target <= 1e-5), plus the max per-step |difference|;
* sanity checks that make the comparison meaningful: identical token ids / labels on both sides, identical initial
  weights (the chat-ml tokens are added with `mean_resizing=True`, which samples new rows from a normal distribution,
  so both sides are seeded identically before resizing).

Runs alternate (ours, TRL, ours, TRL, ...) after one short unreported warm-up of each side, and the medians of the
repeats are reported so that drift and noise cancel.

    cd /work/main && PYTHONPATH=src HF_HUB_OFFLINE=1 .venv/bin/python bench/sft_vs_trl.py [--steps 60] [--repeats 2]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import logging
import os
import statistics
import tempfile
import time
import warnings
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "examples" / "data" / "facts.jsonl"
SEED = 42
LR = 1e-3
BATCH = 8
MAX_LEN = 256

# Filled by the `SFTTrainer.train` wrapper for whichever side is running.
CAPTURE: dict = {}


def install_train_probe() -> None:
    """Wrap `trl.SFTTrainer.train` (used by both sides) to time it and capture what went into it.

    A callback also records the time between consecutive optimizer steps: the median step time shrugs off the
    bursts of load other processes put on a shared machine, which a whole-loop time of a few seconds cannot.
    """
    import trl
    from transformers import TrainerCallback

    class StepTimer(TrainerCallback):
        def on_train_begin(self, args, state, control, **kwargs):
            CAPTURE["step_s"], CAPTURE["_last"] = [], time.perf_counter()

        def on_step_end(self, args, state, control, **kwargs):
            now = time.perf_counter()
            CAPTURE["step_s"].append(now - CAPTURE["_last"])
            CAPTURE["_last"] = now

    original = trl.SFTTrainer.train

    def timed_train(self, *args, **kwargs):
        CAPTURE["startup_end"] = time.perf_counter()
        dataset = self.train_dataset
        CAPTURE["input_ids"] = [list(ids) for ids in dataset["input_ids"]]
        CAPTURE["labels"] = [list(ids) for ids in dataset["labels"]]
        CAPTURE["init_state"] = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
        CAPTURE["args"] = self.args
        if not any(isinstance(callback, StepTimer) for callback in self.callback_handler.callbacks):
            self.add_callback(StepTimer())
        # The per-step log lines go to a throw-away buffer on both sides, to keep the report readable.
        with contextlib.redirect_stdout(io.StringIO()):
            start = time.perf_counter()
            result = original(self, *args, **kwargs)
        CAPTURE["train_s"] = time.perf_counter() - start
        CAPTURE["train_end"] = time.perf_counter()
        CAPTURE["log_history"] = list(self.state.log_history)
        return result

    trl.SFTTrainer.train = timed_train


def write_engine_config(path: Path, model_dir: Path, output_dir: Path, steps: int) -> Path:
    import yaml

    config = {
        "method": "sft",
        "data_conf": {
            "training_data": {"type": "CONCATENATION", "datasets": [{"path": str(DATA)}]},
            "validation_data": {"type": "NONE"},
            "chat_template_name": "chat-ml",
            "missing_pad_token_strategy": "bos-repurpose",
        },
        "training_args": {
            "output_dir": str(output_dir),
            "max_steps": steps,
            "learning_rate": LR,
            "lr_scheduler_type": "constant",
            "logging_steps": 1,
            "save_strategy": "no",
            "seed": SEED,
            "report_to": "none",
            "activation_checkpointing": False,  # new name of gradient_checkpointing (TRL's default: on)
            "bf16": False,
        },
        "batchsize_conf": {"total_train_batch_size": BATCH, "max_per_device_train_batch_size": BATCH},
        "peft_conf": {"peft_type": "NO_PEFT"},
        "run_conf": {"model": str(model_dir)},
        "sft_args": {"max_seq_length": MAX_LEN, "train_on_completions_only": False},
    }
    path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    return path


def run_ours(config_path: Path) -> dict:
    """Config parsing + `run_sft`; start-up is everything before `trainer.train()`, tail is the final save."""
    from finetuning.config import load_config
    from finetuning.sft import run_sft

    CAPTURE.clear()
    start = time.perf_counter()
    cfg = load_config(config_path)
    run_sft(cfg)
    end = time.perf_counter()
    return {
        **CAPTURE,
        "startup_s": CAPTURE["startup_end"] - start,
        "tail_s": end - CAPTURE["train_end"],
    }


def run_trl(model_dir: Path, output_dir: Path, steps: int) -> dict:
    """Plain TRL with the same tokenizer set-up as the engine's chat-ml + bos-repurpose, TRL tokenises the data."""
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer, set_seed
    from trl import SFTConfig, SFTTrainer

    from finetuning.data.templates import TEMPLATES

    CAPTURE.clear()
    start = time.perf_counter()
    set_seed(SEED)  # same RNG position as the engine when the embeddings are resized (mean_resizing samples)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    template = TEMPLATES["chat-ml"]
    tokenizer.chat_template = template.jinja
    tokenizer.add_special_tokens(
        {"additional_special_tokens": list(template.added_special_tokens)}, replace_extra_special_tokens=False
    )
    tokenizer.padding_side = "right"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.bos_token
    with DATA.open(encoding="utf-8") as handle:
        rows = [json.loads(line) for line in handle if line.strip()]
    dataset = Dataset.from_dict({"messages": [row["messages"] for row in rows]})
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    if len(tokenizer) > model.get_input_embeddings().weight.shape[0]:
        model.resize_token_embeddings(len(tokenizer), mean_resizing=True)
    args = SFTConfig(
        output_dir=str(output_dir),
        per_device_train_batch_size=BATCH,
        gradient_accumulation_steps=1,
        max_steps=steps,
        learning_rate=LR,
        lr_scheduler_type="constant",
        seed=SEED,
        logging_steps=1,
        save_strategy="no",
        report_to="none",
        activation_checkpointing=False,
        bf16=False,
        max_length=MAX_LEN,
    )
    trainer = SFTTrainer(model=model, args=args, train_dataset=dataset, processing_class=tokenizer)
    trainer.train()
    end = time.perf_counter()
    return {**CAPTURE, "startup_s": CAPTURE["startup_end"] - start, "tail_s": end - CAPTURE["train_end"]}


def step_losses(log_history: list[dict]) -> dict[int, float]:
    return {entry["step"]: entry["loss"] for entry in log_history if "loss" in entry}


def compare_inputs(ours: dict, trl: dict) -> list[str]:
    """Describe every difference in token ids, labels and initial weights between the two sides (empty: none)."""
    problems = []
    if len(ours["input_ids"]) != len(trl["input_ids"]):
        problems.append(f"dataset sizes differ: ours {len(ours['input_ids'])}, TRL {len(trl['input_ids'])}")
    ids_diff = [i for i, (a, b) in enumerate(zip(ours["input_ids"], trl["input_ids"], strict=False)) if a != b]
    if ids_diff:
        i = ids_diff[0]
        problems.append(
            f"token ids differ in {len(ids_diff)} examples; first #{i}: ours {ours['input_ids'][i]} TRL {trl['input_ids'][i]}"
        )
    labels_diff = [i for i, (a, b) in enumerate(zip(ours["labels"], trl["labels"], strict=False)) if a != b]
    if labels_diff:
        problems.append(f"labels differ in {len(labels_diff)} examples (first #{labels_diff[0]})")
    worst = 0.0
    for name, tensor in ours["init_state"].items():
        other = trl["init_state"].get(name)
        if other is None or other.shape != tensor.shape:
            problems.append(f"initial weight {name} missing or of another shape on the TRL side")
            continue
        worst = max(worst, (tensor - other).abs().max().item())
    if worst:
        problems.append(f"initial weights differ, max |diff| {worst:.3e}")
    keys = ("per_device_train_batch_size", "gradient_accumulation_steps", "learning_rate", "lr_scheduler_type")
    keys += ("max_steps", "seed", "activation_checkpointing", "bf16", "weight_decay", "warmup_steps", "optim")
    for key in keys:
        a, b = getattr(ours["args"], key), getattr(trl["args"], key)
        if a != b:
            problems.append(f"SFTConfig.{key}: ours {a!r}, TRL {b!r}")
    return problems


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=60, help="optimizer steps per run (default 60)")
    parser.add_argument("--repeats", type=int, default=2, help="timed runs per side, alternating (default 2)")
    parser.add_argument("--warmup-steps", type=int, default=3, help="steps of the unreported warm-up (0: none)")
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch intra-op threads (default 1; 0: torch's choice). With more threads than free cores (other jobs "
        "on the machine), spinning OpenMP threads slow steps down 10-100x at random",
    )
    parser.add_argument("--out", type=Path, default=None, help="work directory (default: a new temporary one)")
    args = parser.parse_args(argv)

    out = args.out or Path(tempfile.mkdtemp(prefix="bench-sft-vs-trl-"))
    out.mkdir(parents=True, exist_ok=True)
    warnings.filterwarnings("ignore", message=".*pin_memory.*")
    logging.basicConfig(level=logging.WARNING)
    for noisy in ("transformers", "trl", "datasets", "finetuning"):
        logging.getLogger(noisy).setLevel(logging.ERROR)
    import datasets
    import transformers

    datasets.disable_progress_bars()
    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()

    from finetuning.tools.tiny_model import build_tiny_model

    model_dir = build_tiny_model(out / "tiny-base", [DATA], vocab_size=512, hidden_size=128, num_layers=4)
    install_train_probe()
    import torch

    if args.threads > 0:
        torch.set_num_threads(args.threads)
    print(f"work dir: {out}  (steps={args.steps}, repeats={args.repeats}, torch threads: {torch.get_num_threads()})")

    def ours(steps: int, tag: str) -> dict:
        config = write_engine_config(out / f"ours-{tag}.yaml", model_dir, out / f"ours-{tag}", steps)
        return run_ours(config)

    def trl(steps: int, tag: str) -> dict:
        return run_trl(model_dir, out / f"trl-{tag}", steps)

    if args.warmup_steps > 0:
        ours(args.warmup_steps, "warmup")
        trl(args.warmup_steps, "warmup")

    runs: dict[str, list[dict]] = {"ours": [], "trl": []}
    for repeat in range(args.repeats):
        for side, fn in (("ours", ours), ("trl", trl)):
            result = fn(args.steps, str(repeat))
            runs[side].append(result)
            print(
                f"  repeat {repeat} {side:4s}: start-up {result['startup_s']:.2f}s  train {result['train_s']:.2f}s  "
                f"tail {result['tail_s']:.2f}s  (steps: median {statistics.median(result['step_s']) * 1e3:.1f} ms, "
                f"max {max(result['step_s']) * 1e3:.0f} ms)"
            )

    first_ours, first_trl = runs["ours"][0], runs["trl"][0]
    example_ours, example_trl = first_ours["input_ids"][0], first_trl["input_ids"][0]
    print(f"first example token ids identical: {example_ours == example_trl} ({len(example_ours)} tokens)")
    problems = compare_inputs(first_ours, first_trl)
    print("inputs / initial weights / settings identical:", "yes" if not problems else "NO")
    for problem in problems:
        print("  -", problem)

    def median(side: str, key: str) -> float:
        return statistics.median(run[key] for run in runs[side])

    losses_ours, losses_trl = step_losses(first_ours["log_history"]), step_losses(first_trl["log_history"])
    common = sorted(set(losses_ours) & set(losses_trl))
    last = common[-1]
    per_step = max(abs(losses_ours[s] - losses_trl[s]) for s in common)
    # Determinism within a side: every repeat must give the same losses.
    spread = max(
        abs(step_losses(run["log_history"])[s] - step_losses(runs[side][0]["log_history"])[s])
        for side in runs
        for run in runs[side]
        for s in common
    )
    train_ours, train_trl = median("ours", "train_s"), median("trl", "train_s")
    best_ours = min(run["train_s"] for run in runs["ours"])
    best_trl = min(run["train_s"] for run in runs["trl"])
    print()
    print(f"{'':22s}{'ours':>10s}{'TRL':>10s}{'ratio':>10s}")
    print(f"{'train loop (s)':22s}{train_ours:10.3f}{train_trl:10.3f}{train_ours / train_trl:10.3f}   (target <= 1.05)")
    print(f"{'  best of repeats':22s}{best_ours:10.3f}{best_trl:10.3f}{best_ours / best_trl:10.3f}")
    steps_ours = statistics.median(t for run in runs["ours"] for t in run["step_s"][1:])
    steps_trl = statistics.median(t for run in runs["trl"] for t in run["step_s"][1:])
    print(
        f"{'  median step (ms)':22s}{steps_ours * 1e3:10.2f}{steps_trl * 1e3:10.2f}{steps_ours / steps_trl:10.3f}"
        "   (robust to load bursts)"
    )
    print(f"{'start-up (s)':22s}{median('ours', 'startup_s'):10.3f}{median('trl', 'startup_s'):10.3f}")
    print(
        f"{'after train (s)':22s}{median('ours', 'tail_s'):10.3f}{median('trl', 'tail_s'):10.3f}   (ours: final save)"
    )
    print(
        f"{f'loss at step {last}':22s}{losses_ours[last]:10.6f}{losses_trl[last]:10.6f}"
        f"   |diff| {abs(losses_ours[last] - losses_trl[last]):.1e}   (target <= 1e-5)"
    )
    print(f"{'max per-step |diff|':22s}{'':20s}   {per_step:.1e}   over {len(common)} logged steps")
    print(f"{'repeat-to-repeat':22s}{'':20s}   {spread:.1e}   (max loss spread across repeats)")


if __name__ == "__main__":
    main()
