"""`finetuning sft CONFIG`: supervised fine-tuning, one short recipe — set up → train → save → report, with TRL's
SFTTrainer running the loop."""

from __future__ import annotations

from .data.collator import build_collator
from .data.sft import build_sft_datasets
from .train.lifecycle import RunResult, training_run
from .train.run import (
    RunOptions,
    build_trainer,
    evaluate,
    load_policy,
    log_data_report,
    prepare_tokenizer,
    report,
    save,
    train,
    training_config,
)


def run_sft(cfg, options: RunOptions | None = None) -> RunResult:
    """Train per `cfg` (an SFTExperimentConfig); the result names the final model, or the checkpoint of a stopped run."""
    from trl import SFTConfig, SFTTrainer

    options = options or RunOptions()
    with training_run(cfg, options) as run:
        tokenizer, markers, _ = prepare_tokenizer(cfg)
        completion_markers = markers if cfg.sft_args.train_on_completions_only else None
        train_data, eval_data, data_report = build_sft_datasets(
            cfg.data_conf, cfg.sft_args, tokenizer, completion_markers, options.num_preprocess_workers
        )
        log_data_report(data_report)
        args = training_config(
            SFTConfig,
            cfg,
            run,
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
            data_collator=build_collator(
                tokenizer,
                cfg.data_conf.missing_pad_token_strategy,
                packing=cfg.sft_args.packing,
                attention=model.config._attn_implementation,  # packed batches take the form it separates cheaply
            ),
        )
        train(trainer, run)
        save(trainer, run, tokenizer, markers)
        report(trainer, run, data_report, evaluate(cfg, run))
    return run.result
