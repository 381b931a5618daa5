"""`finetuning dpo CONFIG`: preference optimisation — DPO and every TRL DPO loss type (`method: dpo`), or KTO
(`method: kto`). The same skeleton as `sft.py`; only the data and the TRL trainer differ."""

from __future__ import annotations

from .data.preference import build_dpo_datasets, build_kto_datasets
from .model.loading import ModelSetupError
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


def refuse_vocabulary_growth(cfg, added: list[str]) -> None:
    """New tokens would start untrained in the policy *and* the reference: the preference signal on them is noise."""
    if added:
        raise ModelSetupError(
            f"data_conf.chat_template_name: {cfg.data_conf.chat_template_name!r} would add {added} to the vocabulary, "
            "which preference training cannot learn; run `finetuning sft` with this template first and start DPO "
            "from its (merged) model, whose tokenizer already has these tokens — or use `keep-original`"
        )


def _dpo_trainer_class(reference_free: bool):
    from trl import DPOTrainer

    class PretokenizedDPOTrainer(DPOTrainer):
        """Our pipeline already built prompt/chosen/rejected ids (with max_prompt_length truncation, which TRL 1.16
        no longer has); TRL's own preparation would re-tokenise text."""

        def _prepare_dataset(self, dataset, processing_class, args, dataset_name):
            return dataset

        def _precompute_ref_logps(self, dataset, name, batch_size):
            # reference_free rides on TRL's precomputed-reference path, with the reference log-probs all zero.
            if not reference_free:
                return super()._precompute_ref_logps(dataset, name, batch_size)
            zeros = [0.0] * len(dataset)
            return dataset.add_column("ref_chosen_logps", zeros).add_column("ref_rejected_logps", zeros)

    return PretokenizedDPOTrainer


def run_preference(cfg, options: RunOptions | None = None) -> RunResult:
    """Train per `cfg` (a DPOExperimentConfig or KTOExperimentConfig); see `run_sft` for the result."""
    options = options or RunOptions()
    with training_run(cfg, options) as run:
        tokenizer, markers, added = prepare_tokenizer(cfg)
        refuse_vocabulary_growth(cfg, added)
        train_data, eval_data, data_report = _preference_datasets(cfg, tokenizer, options)
        log_data_report(data_report)
        config_class, trainer_class = _method_classes(cfg)
        args = training_config(config_class, cfg, run, **_method_settings(cfg))
        model = load_policy(cfg, tokenizer, run, allow_vocabulary_growth=False)
        trainer = build_trainer(
            trainer_class,
            model=model,
            args=args,
            train_dataset=train_data,
            eval_dataset=eval_data,
            processing_class=tokenizer,
        )
        train(trainer, run)
        save(trainer, run, tokenizer, markers)
        report(trainer, run, data_report, evaluate(cfg, run))
    return run.result


def _preference_datasets(cfg, tokenizer, options: RunOptions):
    """(train, eval, data report): KTO's unpaired rows, or DPO's prompt/chosen/rejected pairs."""
    if cfg.method == "kto":
        return build_kto_datasets(cfg.data_conf, tokenizer, seed=cfg.training_args.get("seed", 42))
    max_length = cfg.training_args.get("max_length")
    return build_dpo_datasets(
        cfg.data_conf, max_length, cfg.max_prompt_length, tokenizer, options.num_preprocess_workers
    )


def _method_classes(cfg):
    """(TRL config class, trainer class) of the method."""
    from trl import DPOConfig, KTOConfig, KTOTrainer

    if cfg.method == "kto":
        return KTOConfig, KTOTrainer
    return DPOConfig, _dpo_trainer_class(cfg.reference_free)


def _method_settings(cfg) -> dict:
    """What the method sets in its TRL config beyond the user's training_args."""
    settings = {"precompute_ref_log_probs": True} if cfg.method == "dpo" and cfg.reference_free else {}
    if cfg.method == "kto" and "train_sampling_strategy" not in cfg.training_args:
        # TRL's KTO estimates its KL term from neighbours in a fixed-order batch; the data was shuffled (seeded) instead.
        settings["train_sampling_strategy"] = "sequential"
    return settings
