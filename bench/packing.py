"""Benchmark: real (non-pad) training tokens per second with `sft_args.packing` against padded batches, in one run.

Chat data with skewed lengths (20-1000 tokens, log-uniform: many short conversations, a few long ones) is where
padding wastes most: a padded batch is as long as its longest example. This generates such data (seeded, with the
sentence maker of bench/data_pipeline.py), builds a small random Llama (256 wide, 4 layers, fp32) whose tokenizer is
trained on a sample of it, and trains `finetuning sft` on it in this process with the same model, batch (8 rows per
step) and number of optimizer steps: packed (bfd, separate documents, sdpa; one epoch), then padded (one example per
row, as many steps). Real tokens per second: the non-pad tokens each run trained on over its `train_runtime`; the two
runs alternate `--repeats` times and the best of each counts (other work on the machine only slows a run down).
Printed: both rates, packed / padded (goal >= 1.8 on CPU), and how full the packed rows were.

    .venv/bin/python bench/packing.py [--examples 400] [--repeats 2] [--attention sdpa] [--out DIR]

Everything is written under a temporary directory (or `--out`), never into the repository.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from data_pipeline import BATCH, _sentence, engine_config  # noqa: E402 - the bench scripts import each other as plain modules

SHORTEST, LONGEST = 20, 1000  # tokens per example; batch and max length as data_pipeline.py


def skewed_conversation(rng: random.Random, tokens_per_word: float) -> dict:
    """A user question and an assistant answer, about log-uniform(SHORTEST, LONGEST) tokens in all."""
    target = math.exp(rng.uniform(math.log(SHORTEST), math.log(LONGEST)))
    words = max(4, round(target / tokens_per_word) - 8)  # the chat-ml markup takes a few tokens
    text = []
    while sum(len(sentence.split()) for sentence in text) < words:
        text.append(_sentence(rng))
    answer = " ".join(text).split()[:words]
    cut = max(1, len(answer) // 4)
    return {
        "messages": [
            {"role": "user", "content": " ".join(answer[:cut])},
            {"role": "assistant", "content": " ".join(answer[cut:])},
        ]
    }


def write_data(path: Path, count: int, tokens_per_word: float, seed: int = 0) -> Path:
    rng = random.Random(seed)
    with path.open("w", encoding="utf-8") as handle:
        for _ in range(count):
            handle.write(json.dumps(skewed_conversation(rng, tokens_per_word)) + "\n")
    return path


def tokens_per_word(model_dir: Path, sample: Path) -> float:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    texts = [m["content"] for line in sample.read_text().splitlines() for m in json.loads(line)["messages"]]
    return sum(len(tokenizer(text)["input_ids"]) for text in texts) / sum(len(text.split()) for text in texts)


def config(data: Path, model_dir: Path, output_dir: Path, steps: int | None, attention: str, packing: bool) -> dict:
    """data_pipeline.py's engine config (same batch and max length), with `steps` optimizer steps (None: one epoch),
    the attention implementation and packing on or off."""
    document = engine_config(data, model_dir, output_dir)
    training_args = document["training_args"]
    del training_args["max_steps"]
    training_args.update({"max_steps": steps} if steps else {"num_train_epochs": 1})
    training_args.update({"learning_rate": 1e-3, "logging_steps": 1, "disable_tqdm": True, "seed": 0})
    document["run_conf"]["model_args"] = {"attn_implementation": attention}
    document["sft_args"]["packing"] = packing
    return document


def summary_value(out: Path, row: str) -> str:
    """A row of the run's summary.md, e.g. `tokens per epoch`."""
    for line in (out / "summary.md").read_text(encoding="utf-8").splitlines():
        if line.startswith(f"| {row} |"):
            return line.split("|")[2].strip()
    return ""


def train(root: Path, name: str, data: Path, model_dir: Path, steps: int | None, attention: str, packing: bool) -> dict:
    """One `finetuning sft` run in this process: its steps, real tokens, runtime and tokens/s. Padded, the real
    tokens are TRL's `num_tokens` (the attention mask's ones); packed, the run is one epoch and they are the epoch's
    tokens (TRL's count would include the few pads at the packed rows' ends)."""
    import yaml

    from finetuning.cli import main

    out = root / name
    path = root / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config(data, model_dir, out, steps, attention, packing)), encoding="utf-8")
    if main(["sft", str(path)]) != 0:
        raise SystemExit(f"the {name} run failed")
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    if packing:
        tokens = int(summary_value(out, "tokens per epoch").split()[0])
    else:
        tokens = max(record["num_tokens"] for record in records if "num_tokens" in record)
    runtime = next(record["train_runtime"] for record in records if "train_runtime" in record)
    steps_run = max(record["step"] for record in records)
    return {"steps": steps_run, "tokens": tokens, "runtime": runtime, "rate": tokens / runtime, "out": out}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=400)
    parser.add_argument("--attention", default="sdpa")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)

    from finetuning.tools.tiny_model import build_tiny_model

    with tempfile.TemporaryDirectory(prefix="bench-packing-") as scratch:
        root = args.out or Path(scratch)
        root.mkdir(parents=True, exist_ok=True)
        sample = write_data(root / "sample.jsonl", 200, tokens_per_word=1.0, seed=1)
        model_dir = build_tiny_model(root / "model", [sample], hidden_size=256, num_layers=4)
        data = write_data(root / "data.jsonl", args.examples, tokens_per_word(model_dir, sample))
        train(root, "warmup", data, model_dir, 2, args.attention, packing=False)  # first-run costs out of the way
        runs: dict[str, list[dict]] = {"padded": [], "packed": []}
        for repeat in range(args.repeats):  # alternated, the best of each: other work on the machine only slows
            runs["packed"].append(train(root, f"packed-{repeat}", data, model_dir, None, args.attention, True))
            steps = runs["packed"][-1]["steps"]  # the padded run trains as many steps
            runs["padded"].append(train(root, f"padded-{repeat}", data, model_dir, steps, args.attention, False))
        padded, packed = (max(runs[name], key=lambda run: run["rate"]) for name in ("padded", "packed"))
        packing_line = summary_value(packed["out"], "packing")

    print(
        f"\nbench/packing.py: {args.examples} examples of {SHORTEST}-{LONGEST} tokens, batch {BATCH}, "
        f"{packed['steps']} steps each, {args.attention}, CPU fp32"
    )
    for name, run in (("padded", padded), ("packed", packed)):
        print(
            f"  {name:7s} {run['tokens']:>9,.0f} real tokens in {run['runtime']:6.2f}s = {run['rate']:>9,.0f} tokens/s"
        )
    print(f"  packed / padded real tokens per second: {packed['rate'] / padded['rate']:.2f}x (goal >= 1.8x)")
    print(f"  packing: {packing_line}")


if __name__ == "__main__":
    main()
