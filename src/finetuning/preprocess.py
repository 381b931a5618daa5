"""`finetuning preprocess CONFIG`: the data work of a run and nothing else — run `data_conf.preprocess` (VectorLM's
preprocessing, data/vectorlm.py) when the config has one, check the data files, tokenize, store the result in the
data cache (data/cache.py) — so data can be prepared on a CPU node and a GPU job of the same config starts training
at once (axolotl's `preprocess`, VectorLM's separate preprocessing step).

Only the data is checked: the training arguments of a GPU job (bf16, devices) need not hold on the node that
prepares its data; `finetuning validate` checks everything.
"""

from __future__ import annotations

import logging
import os
import time

from .data.cache import cache_location
from .errors import UserError

logger = logging.getLogger(__name__)

WAIT_SECONDS = 4 * 3600  # how long the other processes of a machine wait for the first one's preprocessing
POLL_SECONDS = 0.5


def preprocess(cfg, num_workers: int | None = None) -> str:
    """Run data_conf.preprocess (if any), then check, tokenize and cache the data of `cfg`; returns the lines to print
    (where the preprocessed and the cached data are, the counts)."""
    from .train.preflight import check_data
    from .validate import prepare_tokenizer

    lines = run_vectorlm_preprocess(cfg, num_workers).lines() if cfg.data_conf.preprocess is not None else []
    if problems := check_data(cfg):
        raise UserError(problems)
    if cfg.method == "kto":  # TRL's KTOTrainer tokenizes at training time: nothing here to store
        return "\n".join([*lines, "data OK; KTO data is tokenized by TRL at training time, so nothing is cached"])
    tokenizer, markers, _ = prepare_tokenizer(cfg)
    train, _, report = _build(cfg, tokenizer, markers, num_workers)
    return "\n".join(
        [
            *lines,
            f"tokenized data cached in {cache_location(train)}",
            f"training examples: {report.train_examples}",
            f"validation examples: {report.eval_examples}",
            f"training tokens: {report.train_tokens} ({report.trained_tokens} trained)",
            "dropped as too long: "
            + (", ".join(f"{what} {count}" for what, count in report.dropped_too_long.items() if count) or "none"),
        ]
    )


def run_vectorlm_preprocess(cfg, num_workers: int | None = None):
    """data_conf.preprocess with the config's tokenizer (as loaded, no chat template: VectorLM tokenizes with the
    model's own) and sft_args.max_seq_length; returns its PreprocessReport."""
    from .data.inputs import preprocess_workers
    from .data.vectorlm import preprocess as run
    from .model.tokenizer import load_tokenizer

    if cfg.method != "sft":
        raise UserError(
            f"data_conf.preprocess: writes rows for SFT (a dataset entry of format tokenized); this is a {cfg.method} "
            "config: drop data_conf.preprocess"
        )
    workers = preprocess_workers(num_workers, cfg.data_conf)
    _, report = run(cfg.data_conf.preprocess, load_tokenizer(cfg.run_conf), cfg.sft_args.max_seq_length, workers)
    return report


def run_pending_preprocess(cfg, num_workers: int | None = None) -> None:
    """Before a training run's checks: when a `format: tokenized` entry names data_conf.preprocess.save_path and that
    does not exist yet, write it first (one line says so). Of several processes on a machine the first writes it and
    the others wait for it to appear (it is renamed into place whole); a failure ends the whole launch (torchrun)."""
    from .data.vectorlm_checks import waiting_entries

    if cfg.method != "sft" or not (keys := waiting_entries(cfg.data_conf)):
        return
    save_path = cfg.data_conf.preprocess.save_path
    if int(os.environ.get("LOCAL_RANK", "0")) != 0:
        _wait_for(save_path)
        return
    logger.info("%s: %s does not exist yet: running data_conf.preprocess first to write it", keys[0], save_path)
    report = run_vectorlm_preprocess(cfg, num_workers)
    logger.info("data_conf.preprocess: %s", "; ".join(report.lines()))


def _wait_for(save_path: str, timeout: float = WAIT_SECONDS) -> None:
    from .paths import resolve_user_path

    target = resolve_user_path(save_path)
    deadline = time.monotonic() + timeout
    while not target.exists():
        if time.monotonic() > deadline:
            raise UserError(f"data_conf.preprocess: the first process did not write {target} within {timeout:.0f} s")
        time.sleep(POLL_SECONDS)


def _build(cfg, tokenizer, markers, num_workers: int | None):
    """The method's datasets, exactly as its training command builds them (so that it finds them cached)."""
    if cfg.method == "sft":
        from .data.sft import build_sft_datasets

        completions = markers if cfg.sft_args.train_on_completions_only else None
        return build_sft_datasets(cfg.data_conf, cfg.sft_args, tokenizer, completions, num_workers)
    from .data.preference import build_dpo_datasets

    max_length = cfg.training_args.get("max_length")
    return build_dpo_datasets(cfg.data_conf, max_length, cfg.max_prompt_length, tokenizer, num_workers)
