"""`finetuning preprocess CONFIG`: the data work of a run and nothing else — check the data files, tokenize, store the
result in the data cache (data/cache.py) — so data can be prepared on a CPU node and a GPU job of the same config
starts training at once (axolotl's `preprocess`, VectorLM's separate preprocessing step).

Only the data is checked: the training arguments of a GPU job (bf16, devices) need not hold on the node that
prepares its data; `finetuning validate` checks everything.
"""

from __future__ import annotations

from .data.cache import cache_location
from .errors import UserError


def preprocess(cfg, num_workers: int | None = None) -> str:
    """Check, tokenize and cache the data of `cfg`; returns the lines to print (where the cache is, the report)."""
    from .train.preflight import check_data
    from .validate import prepare_tokenizer

    if problems := check_data(cfg):
        raise UserError(problems)
    if cfg.method == "kto":  # TRL's KTOTrainer tokenizes at training time: nothing here to store
        return "data OK; KTO data is tokenized by TRL at training time, so nothing is cached"
    tokenizer, markers, _ = prepare_tokenizer(cfg)
    train, _, report = _build(cfg, tokenizer, markers, num_workers)
    return "\n".join(
        [
            f"tokenized data cached in {cache_location(train)}",
            f"training examples: {report.train_examples}",
            f"validation examples: {report.eval_examples}",
            f"training tokens: {report.train_tokens} ({report.trained_tokens} trained)",
            "dropped as too long: "
            + (", ".join(f"{what} {count}" for what, count in report.dropped_too_long.items() if count) or "none"),
        ]
    )


def _build(cfg, tokenizer, markers, num_workers: int | None):
    """The method's datasets, exactly as its training command builds them (so that it finds them cached)."""
    if cfg.method == "sft":
        from .data.sft import build_sft_datasets

        completions = markers if cfg.sft_args.train_on_completions_only else None
        return build_sft_datasets(cfg.data_conf, cfg.sft_args, tokenizer, completions, num_workers)
    from .data.preference import build_dpo_datasets

    max_length = cfg.training_args.get("max_length")
    return build_dpo_datasets(cfg.data_conf, max_length, cfg.max_prompt_length, tokenizer, num_workers)
