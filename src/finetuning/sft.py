"""`finetuning sft CONFIG`: supervised fine-tuning, one short recipe — parse → build → SFTTrainer.train() → save."""

from __future__ import annotations

import logging
import os
from pathlib import Path

from .config import dump_resolved_config
from .data.collator import build_collator
from .data.sft import build_sft_datasets
from .data.templates import get_template
from .model.loading import apply_peft, check_model_sources, expand_vocabulary, load_model
from .model.tokenizer import load_tokenizer, setup_tokenizer
from .train.arguments import build_training_config
from .train.batch_size import plan_batches
from .train.checkpoints import resolve_resume
from .train.saving import save_final
from .train.summary import print_run_summary

logger = logging.getLogger(__name__)


def num_processes() -> int:
    """Processes launched for this run (torchrun / accelerate set WORLD_SIZE)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def run_sft(cfg, num_preprocess_workers: int | None = None) -> Path:
    """Train per `cfg` (an SFTExperimentConfig) and return the final checkpoint directory."""
    import time

    from transformers import set_seed
    from trl import SFTConfig, SFTTrainer

    started = time.perf_counter()
    plan = plan_batches(
        cfg.batchsize_conf.total_train_batch_size,
        cfg.batchsize_conf.max_per_device_train_batch_size,
        num_processes(),
        cfg.batchsize_conf.per_device_eval_batch_size,
    )
    logger.info(
        "batch: %d process(es) x %d per device x %d accumulation = %d",
        num_processes(),
        plan.per_device_train_batch_size,
        plan.gradient_accumulation_steps,
        cfg.batchsize_conf.total_train_batch_size,
    )
    # TensorBoard (report_to: tensorboard) writes where Silogen configs said: training_args.logging_dir, $LOGS_PATH
    # or ./logs; transformers 5 takes that from the environment, no longer from TrainingArguments.
    os.environ.setdefault("TENSORBOARD_LOGGING_DIR", cfg.logging_dir)
    set_seed(cfg.training_args.get("seed", 42))
    check_model_sources(cfg.run_conf)

    tokenizer = load_tokenizer(cfg.run_conf)
    template = get_template(cfg.data_conf.chat_template_name)
    markers, _ = setup_tokenizer(tokenizer, template, cfg.data_conf)
    completions_markers = markers if cfg.sft_args.train_on_completions_only else None
    train_data, eval_data, report = build_sft_datasets(
        cfg.data_conf, cfg.sft_args, tokenizer, completions_markers, num_preprocess_workers
    )
    logger.info(
        "data: %d training / %d validation examples, %d tokens (%d trained)",
        report.train_examples,
        report.eval_examples,
        report.train_tokens,
        report.trained_tokens,
    )

    output_dir = Path(cfg.training_args["output_dir"])
    quantized = cfg.quant_conf.quantization_type != "no-quantization"
    model = load_model(cfg.run_conf, cfg.quant_conf, num_processes())
    vocab_expanded = expand_vocabulary(model, tokenizer, quantized)
    if vocab_expanded and cfg.peft_conf.peft_type != "NO_PEFT":
        # Adapters trained on a resized model can only be merged onto the resized base: keep it beside them.
        new_base = output_dir / cfg.sft_args.save_name_if_new_basemodel
        model.save_pretrained(new_base)
        tokenizer.save_pretrained(new_base)
        logger.info("resized base model saved to %s (merge adapters onto this one)", new_base)
    model = apply_peft(model, cfg.peft_conf, vocab_expanded, quantized)

    args = build_training_config(
        SFTConfig,
        cfg.training_args,
        cfg.overrides,
        cfg.batchsize_conf,
        plan,
        max_length=cfg.sft_args.max_seq_length,
        dataset_kwargs={"skip_prepare_dataset": True},  # data is tokenised and masked by our pipeline
    )
    trainer = SFTTrainer(
        model=model,
        args=args,
        train_dataset=train_data,
        eval_dataset=eval_data,
        processing_class=tokenizer,
        data_collator=build_collator(tokenizer, cfg.data_conf.missing_pad_token_strategy),
    )
    trainer.train(resume_from_checkpoint=resolve_resume(cfg.run_conf.resume_from_checkpoint, str(output_dir)))
    final_dir = output_dir / cfg.run_conf.final_checkpoint_name
    save_final(trainer, tokenizer, final_dir, markers.assistant_end, dump_resolved_config(cfg))
    if trainer.is_world_process_zero():
        print_run_summary(trainer, report, final_dir, time.perf_counter() - started)
    return final_dir
