"""`finetuning sft CONFIG`: supervised fine-tuning, one short recipe — parse → build → SFTTrainer.train() → save."""

from __future__ import annotations

from .data.collator import build_collator
from .data.sft import build_sft_datasets
from .train.arguments import build_training_config
from .train.run import (
    RunOptions,
    RunResult,
    build_trainer,
    finish_run,
    load_policy,
    log_data_report,
    prepare_tokenizer,
    start_run,
)


def run_sft(cfg, options: RunOptions | None = None) -> RunResult:
    """Train per `cfg` (an SFTExperimentConfig); the result names the final model, or the checkpoint of a stopped run."""
    from trl import SFTConfig, SFTTrainer

    options = options or RunOptions()
    run = start_run(cfg, options)
    tokenizer, markers, _ = prepare_tokenizer(cfg)
    completion_markers = markers if cfg.sft_args.train_on_completions_only else None
    train_data, eval_data, report = build_sft_datasets(
        cfg.data_conf, cfg.sft_args, tokenizer, completion_markers, options.num_preprocess_workers
    )
    log_data_report(report)

    # before the model: argument errors (e.g. bf16 on a machine without it) are reported without loading anything
    args = build_training_config(
        SFTConfig,
        run.training_args,
        cfg.overrides,
        cfg.batchsize_conf,
        run.plan,
        announce=False,  # the pre-flight built (and described) the same arguments
        max_length=cfg.sft_args.max_seq_length,
        dataset_kwargs={"skip_prepare_dataset": True},  # data is tokenised and masked by our pipeline
    )
    model = load_policy(cfg, tokenizer, run, new_base_name=cfg.sft_args.save_name_if_new_basemodel)
    trainer = build_trainer(
        SFTTrainer,
        model=model,
        args=args,
        train_dataset=train_data,
        eval_dataset=eval_data,
        processing_class=tokenizer,
        data_collator=build_collator(tokenizer, cfg.data_conf.missing_pad_token_strategy),
    )
    return finish_run(trainer, cfg, tokenizer, markers, report, run)
