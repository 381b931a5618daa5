"""Benchmark: what atomic checkpoints cost. The engine's save (staged in `.staging/`, every file fsynced, renamed into
place, rotation by rename-then-delete; train/checkpoints.py) against the plain Trainer save, same process, same model,
same optimizer state.

One trainer of each kind is built on the same local Llama (about 30M parameters, so a checkpoint with AdamW state is
a few hundred MB), trained one step so the optimizer state exists, then saved alternately (ours, plain, ours, ...)
with `save_total_limit: 2` so rotation runs on both sides. Printed: median save time per side and the ratio ours /
plain. The fsync makes ours wait for the data to reach the disk, which the plain save leaves to the page cache.

    cd /work/main && PYTHONPATH=src HF_HUB_OFFLINE=1 .venv/bin/python bench/checkpoint_save.py [--saves 5]
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "examples" / "data" / "facts.jsonl"


def build_trainer(trainer_class, model_dir: Path, output_dir: Path):
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTConfig

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    texts = DATA.read_text().splitlines()[:16]
    args = SFTConfig(
        output_dir=str(output_dir),
        max_steps=1,
        per_device_train_batch_size=4,
        save_strategy="no",
        save_total_limit=2,
        report_to="none",
        disable_tqdm=True,
        max_length=64,
        use_cpu=True,
    )
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    trainer = trainer_class(
        model=model, args=args, train_dataset=Dataset.from_dict({"text": texts}), processing_class=tokenizer
    )
    trainer.train()  # one step: the optimizer state now exists and is saved with each checkpoint
    return trainer


def timed_save(trainer) -> float:
    trainer.state.global_step += 1
    started = time.perf_counter()
    trainer._save_checkpoint(trainer.model, trial=None)
    return time.perf_counter() - started


def checkpoint_bytes(output_dir: Path) -> int:
    newest = max(output_dir.glob("checkpoint-*"), key=lambda path: int(path.name.split("-")[1]))
    return sum(path.stat().st_size for path in newest.rglob("*") if path.is_file())


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--saves", type=int, default=5)
    options = parser.parse_args(argv)
    logging.disable(logging.WARNING)
    from transformers.utils import logging as transformers_logging
    from trl import SFTTrainer

    transformers_logging.disable_progress_bar()

    from finetuning.tools.tiny_model import build_tiny_model
    from finetuning.train.checkpoints import AtomicCheckpoints

    atomic_class = type("SFTTrainer", (AtomicCheckpoints, SFTTrainer), {})
    with tempfile.TemporaryDirectory() as work:
        work_dir = Path(work)
        model_dir = build_tiny_model(work_dir / "model", [DATA], hidden_size=512, num_layers=8)
        ours = build_trainer(atomic_class, model_dir, work_dir / "ours")
        plain = build_trainer(SFTTrainer, model_dir, work_dir / "plain")
        parameters = sum(p.numel() for p in ours.model.parameters())
        times: dict[str, list[float]] = {"ours": [], "plain": []}
        timed_save(ours), timed_save(plain)  # warm-up, unreported
        for _ in range(options.saves):
            times["ours"].append(timed_save(ours))
            times["plain"].append(timed_save(plain))
        size = checkpoint_bytes(work_dir / "ours")
        kept = sorted(path.name for path in (work_dir / "ours").glob("checkpoint-*"))

    ours_s, plain_s = statistics.median(times["ours"]), statistics.median(times["plain"])
    print(f"model: {parameters / 1e6:.1f}M parameters; one checkpoint: {size / 2**20:.0f} MiB; kept: {kept}")
    print(f"{'':22}{'ours':>10}{'plain':>10}{'ratio':>10}")
    print(f"{'median save (s)':22}{ours_s:10.3f}{plain_s:10.3f}{ours_s / plain_s:10.2f}")
    print(f"{'fastest save (s)':22}{min(times['ours']):10.3f}{min(times['plain']):10.3f}")
    print(f"{'throughput (MiB/s)':22}{size / 2**20 / ours_s:10.0f}{size / 2**20 / plain_s:10.0f}")


if __name__ == "__main__":
    main()
