"""Benchmark: the data pipeline, `finetuning sft` against plain TRL, as whole processes, at two data sizes.

Issue 13 measured a synthetic 40,000-conversation file (35 MB, 16.6 M tokens, tiny 512-token BPE model, chat-ml,
completions-only, 2 optimizer steps): there the data work is nearly all of the run. This generates such data
(seeded, ~830 bytes and ~250 tokens per conversation; the issue's had ~415 tokens) at each size of `--sizes`, builds
one tiny model whose tokenizer is trained on a sample of it, and runs, per size, four child processes:

* **ours first**: `finetuning sft CONFIG` with a fresh `$FINETUNING_CACHE` (nothing tokenised before);
* **TRL first**: bench/data_pipeline_trl.py (`load_dataset("json")` + `SFTTrainer`, its own tokenisation) with a
  fresh `$HF_DATASETS_CACHE`;
* **ours repeat** / **TRL repeat**: the same again with the caches the first runs left (another output dir).

Each child's wall time and peak memory are taken as a whole process tree (psutil polling, every 20 ms, the sum of
the proportional set sizes of the process and its children: `--num-preprocess-workers` / `dataset_num_proc` workers
count, the pages they share with their parent once; without psutil, the largest single process's RSS from `wait4`). Printed: the times, ours / TRL ratios (goals: first <= 1.0, repeat <= 1.0,
peak RSS <= 1.0) and how peak RSS grows with the data (goal: well under the data's growth).

    .venv/bin/python bench/data_pipeline.py [--sizes 5000 20000] [--workers 1] [--out DIR]
    .venv/bin/python bench/data_pipeline.py --sizes 10000 40000   # the issue's largest size

Everything is written under a temporary directory (or `--out`), never into the repository.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TRL_SCRIPT = Path(__file__).resolve().parent / "data_pipeline_trl.py"
STEPS, BATCH, MAX_LENGTH = 2, 8, 1024

_WORD_TEXT = (
    "the a of to and in is it that for on with as was at by be this from or have an they which one you were her all "
    "she there would their we him been has when who will more no if out so said what up its about into than them can "
    "only other new some could time these two may then do first any my now such like our over man me even most made "
    "after also did many before must through back years where much your way well down should because each just those "
    "people how too little state good very make world still own see men work long get here between both life being "
    "under never day same another know while last might us great old year off come since against go came right used "
    "take three question answer model data token river mountain city number colour music garden window engine"
)
_WORDS = _WORD_TEXT.split()


def _sentence(rng: random.Random) -> str:
    words = rng.choices(_WORDS, k=rng.randint(6, 18))
    return " ".join(words).capitalize() + rng.choice(".?!") + (f" {rng.randint(0, 9999)}" if rng.random() < 0.2 else "")


def _turn(rng: random.Random, sentences: tuple[int, int]) -> str:
    return " ".join(_sentence(rng) for _ in range(rng.randint(*sentences)))


def conversation(rng: random.Random) -> dict:
    """A chat row: a system prompt, then 1-3 user/assistant exchanges, ~830 bytes on average."""
    messages = [{"role": "system", "content": _turn(rng, (1, 2))}]
    for _ in range(rng.randint(1, 3)):
        messages.append({"role": "user", "content": _turn(rng, (1, 3))})
        messages.append({"role": "assistant", "content": _turn(rng, (1, 4))})
    return {"messages": messages}


def write_data(path: Path, count: int, seed: int = 0) -> Path:
    rng = random.Random(seed)
    with path.open("w", encoding="utf-8") as handle:
        for _ in range(count):
            handle.write(json.dumps(conversation(rng)) + "\n")
    return path


def engine_config(data: Path, model_dir: Path, output_dir: Path) -> dict:
    """The engine's side of the same work as the TRL script: chat-ml, completions-only, same steps, batch, length."""
    return {
        "method": "sft",
        "data_conf": {
            "training_data": {"type": "CONCATENATION", "datasets": [{"path": str(data)}]},
            "validation_data": {"type": "NONE"},
            "chat_template_name": "chat-ml",
            "missing_pad_token_strategy": "bos-repurpose",
        },
        "training_args": {
            "output_dir": str(output_dir),
            "max_steps": STEPS,
            "save_strategy": "no",
            "report_to": "none",
            "activation_checkpointing": False,
            "bf16": False,
        },
        "batchsize_conf": {"total_train_batch_size": BATCH, "max_per_device_train_batch_size": BATCH},
        "peft_conf": {"peft_type": "NO_PEFT"},
        "run_conf": {"model": str(model_dir)},
        "sft_args": {"max_seq_length": MAX_LENGTH, "train_on_completions_only": True},
    }


def write_engine_config(path: Path, data: Path, model_dir: Path, output_dir: Path) -> Path:
    import yaml

    path.write_text(yaml.safe_dump(engine_config(data, model_dir, output_dir), sort_keys=False), encoding="utf-8")
    return path


def _tree_rss(process) -> int:
    """Bytes resident in `process` and all its descendants now (0 for those that just ended), as the sum of their
    proportional set sizes: forked workers share their parent's pages (torch, the tokenizer), which a sum of RSS
    would count once per worker. A single process's PSS is at most its RSS."""
    import psutil

    total = 0
    for member in [process, *process.children(recursive=True)]:
        with contextlib.suppress(psutil.Error):
            total += getattr(member.memory_full_info(), "pss", 0) or member.memory_info().rss
    return total


def measure(command: list[str], env: dict[str, str], log: Path) -> dict:
    """Run `command` to its end; its wall time (s) and peak RSS (bytes) as a whole process tree. A failed child
    stops the benchmark with its log, since a ratio against a crashed run means nothing."""
    try:
        import psutil
    except ImportError:
        psutil = None
    start = time.perf_counter()
    with log.open("w", encoding="utf-8") as output:
        child = subprocess.Popen(command, env=env, stdout=output, stderr=subprocess.STDOUT, cwd=log.parent)
        watched = psutil.Process(child.pid) if psutil else None
        peak = 0
        while True:
            pid, status, usage = os.wait4(child.pid, os.WNOHANG)
            if pid:
                break
            if watched is not None:
                with contextlib.suppress(psutil.Error):  # the tree changes while it is read
                    peak = max(peak, _tree_rss(watched))
            time.sleep(0.02)
    wall = time.perf_counter() - start
    child.returncode = os.waitstatus_to_exitcode(status)
    if child.returncode != 0:
        sys.exit(f"{' '.join(command)} failed (exit {child.returncode}); its output:\n{log.read_text()[-4000:]}")
    return {"wall_s": wall, "rss": peak or usage.ru_maxrss * 1024}


def run_size(work: Path, size: int, model_dir: Path, workers: int) -> dict:
    """The four runs of one data size (see the module docstring), ours and TRL alternating."""
    folder = work / f"n{size}"
    folder.mkdir(parents=True, exist_ok=True)
    data = write_data(folder / "chat.jsonl", size)
    base_env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    ours_env = {**base_env, "FINETUNING_CACHE": str(folder / "finetuning-cache"), "DISABLE_MLFLOW_INTEGRATION": "1"}
    trl_env = {**base_env, "HF_DATASETS_CACHE": str(folder / "hf-datasets-cache")}
    finetuning = [sys.executable, "-c", "from finetuning.cli import main; main()"]
    worker_flag = ["--num-preprocess-workers", str(workers)] if workers > 1 else []
    results = {"bytes": data.stat().st_size}
    for run in ("first", "repeat"):
        config = write_engine_config(folder / f"ours-{run}.yaml", data, model_dir, folder / f"ours-{run}")
        ours = [*finetuning, *worker_flag, "sft", str(config)]
        trl = [sys.executable, str(TRL_SCRIPT), str(model_dir), str(data), str(folder / f"trl-{run}")]
        trl += [
            "--steps",
            str(STEPS),
            "--batch",
            str(BATCH),
            "--max-length",
            str(MAX_LENGTH),
            "--workers",
            str(workers),
        ]
        results[f"ours {run}"] = measure(ours, ours_env, folder / f"ours-{run}.log")
        results[f"trl {run}"] = measure(trl, trl_env, folder / f"trl-{run}.log")
        print(
            f"  {size} conversations, {run:6s}: ours {results[f'ours {run}']['wall_s']:6.1f} s "
            f"{results[f'ours {run}']['rss'] / 2**20:6.0f} MiB | TRL {results[f'trl {run}']['wall_s']:6.1f} s "
            f"{results[f'trl {run}']['rss'] / 2**20:6.0f} MiB",
            flush=True,
        )
    return results


def print_table(results: dict[int, dict]) -> None:
    print()
    header = f"{'conversations':>13s} {'MB':>6s} | {'':6s} {'ours s':>7s} {'TRL s':>7s} {'ratio':>6s} |"
    print(header + f" {'ours MiB':>8s} {'TRL MiB':>8s} {'ratio':>6s}")
    for size, result in results.items():
        for run in ("first", "repeat"):
            ours, trl = result[f"ours {run}"], result[f"trl {run}"]
            print(
                f"{size:13d} {result['bytes'] / 1e6:6.1f} | {run:6s} {ours['wall_s']:7.1f} {trl['wall_s']:7.1f} "
                f"{ours['wall_s'] / trl['wall_s']:6.2f} | {ours['rss'] / 2**20:8.0f} {trl['rss'] / 2**20:8.0f} "
                f"{ours['rss'] / trl['rss']:6.2f}"
            )
    print("goals: time ratio <= 1.00 (first and repeat), peak RSS ratio <= 1.00")
    sizes = sorted(results)
    if len(sizes) > 1:
        small, large = results[sizes[0]], results[sizes[-1]]

        def growth(side: str) -> float:
            return max(large[f"{side} {run}"]["rss"] for run in ("first", "repeat")) / max(
                small[f"{side} {run}"]["rss"] for run in ("first", "repeat")
            )

        print(
            f"data {sizes[-1] / sizes[0]:.1f}x larger: peak RSS ours {growth('ours'):.2f}x, TRL {growth('trl'):.2f}x "
            "(goal: well under the data's growth)"
        )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--sizes", type=int, nargs="+", default=[5000, 20000], help="conversations per data file (issue: 10000 40000)"
    )
    parser.add_argument(
        "--workers", type=int, default=1, help="--num-preprocess-workers of ours and dataset_num_proc of TRL"
    )
    parser.add_argument("--out", type=Path, default=None, help="work directory (default: a new temporary one)")
    args = parser.parse_args(argv)
    work = args.out or Path(tempfile.mkdtemp(prefix="bench-data-pipeline-"))
    work.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from finetuning.tools.tiny_model import build_tiny_model

    sample = write_data(work / "tokenizer-corpus.jsonl", 500, seed=1)
    model_dir = build_tiny_model(work / "tiny-base", [sample], vocab_size=512)
    print(f"work dir: {work}  (steps={STEPS}, batch={BATCH}, max length={MAX_LENGTH}, workers={args.workers})")
    print_table({size: run_size(work, size, model_dir, args.workers) for size in sorted(args.sizes)})


if __name__ == "__main__":
    main()
