"""Pre-flight: everything that can be checked before a model loads, checked at once, every problem listed.

    check_before_loading(cfg)   the entry point of the recipes and `finetuning validate`: batch plan, resume target,
                                the checks below and output dir reuse; raises one UserError naming every problem

The checks, each returning its list of problems (the callers here raise once):
1. `training_args.output_dir` is a writable directory, or can be created, on a disk with room for one checkpoint
   (output_checks.py, with the estimate of checkpoint_size.py, logged);
2. every data file exists and every row parses (the check `finetuning validate` makes, data/);
3. the model path exists (or is a hub id: a similar local directory is suggested) and a local one is a model
   directory with safetensors weights; offline, a hub id must be in the local cache (model/loading.py); a model
   with linear-attention layers is not packed (data/packing.py);
4. what the libraries would refuse later (library_checks.py): an adapter's target_modules must match layers of the
   model (on its meta-device skeleton), the method's TrainingArguments / DPOConfig builds, a deepspeed file parses;
5. a checkpoint to resume from fits the config: same kind of model, same adapter shape, same batch split, same data,
   and complete (resume_checks.py).
6. `training_args.use_liger_kernel` has a CUDA GPU and liger-kernel to run on (liger_problems);
7. `eval_conf`'s data files and include_path exist, lm_eval is installed for lm_eval benchmarks
   (evaluation/checks.py).

The chat template needs no check here: `data_conf.chat_template_name` is a Literal of the known templates, so an
unknown name is already a config error. Paths are resolved against the working directory, as in the Silogen engine,
and every problem names the resolved absolute path.
"""

from __future__ import annotations

from ..data.packing import linear_attention_problems
from ..data.preference import preference_data_problems
from ..data.sft import sft_data_problems
from ..data.vectorlm_checks import preprocess_config_problems, without_waiting_entries
from ..errors import UserError
from ..evaluation.checks import eval_conf_problems
from ..model.loading import check_model_sources
from ..paths import resolve_user_path
from .batch_size import BatchPlan, plan_batches
from .checkpoint_size import local_model_dir
from .checkpoints import RunAlreadyFinished, finished_run, fresh_start_problems, resolve_resume
from .distributed import num_processes, warn_if_unlike_single_process
from .fsdp import fsdp_quantization_problems, sharded_checkpoint_problems
from .library_checks import check_peft_targets, check_training_arguments
from .output_checks import check_disk_space, check_output_dir
from .resume_checks import check_resume_target, recipe_data_fingerprint


def check_data(cfg) -> list[str]:
    """Every data file the config names, read and checked with its method's row check (file:line problems)."""
    if cfg.method == "sft":
        # entries that data_conf.preprocess will write are checked once written (data/vectorlm.py)
        data_conf, problems = without_waiting_entries(cfg.data_conf), preprocess_config_problems(cfg)
        return problems + sft_data_problems(data_conf, require_assistant=cfg.sft_args.train_on_completions_only)
    return preference_data_problems(cfg.data_conf, cfg.method)


def check_model(cfg) -> list[str]:
    """Missing local paths, pickle-only weights (check_model_sources), and a local model dir without config.json."""
    problems = check_model_sources(cfg.run_conf, cfg.peft_conf)
    path = resolve_user_path(cfg.run_conf.model)
    if path.is_dir():
        model_dir = path / (cfg.run_conf.model_args.subfolder or "")
        if not (model_dir / "config.json").is_file():
            problems.append(f"run_conf.model: {model_dir}: no config.json there (not a model directory)")
    return problems + linear_attention_problems(cfg, local_model_dir(cfg.run_conf))


def liger_problems(training_args: dict) -> list[str]:
    """`use_liger_kernel: true` patches the model with Liger's Triton kernels, which need a CUDA GPU and the
    liger-kernel package; without either transformers would fail later, with the model loaded."""
    if not training_args.get("use_liger_kernel"):
        return []
    import torch

    if not torch.cuda.is_available():
        return [
            "training_args.use_liger_kernel: liger kernels are Triton GPU kernels; this machine has no CUDA GPU "
            "(set it to false to train here)"
        ]
    from importlib.util import find_spec

    if find_spec("liger_kernel") is None:
        return ["training_args.use_liger_kernel: needs the liger-kernel package: pip install liger-kernel"]
    return []


def preflight_problems(cfg, plan, resume_from: str | None, fingerprint: str | None = None) -> list[str]:
    """Every problem the checks find before any model loads. `plan` is the launch's BatchPlan (train/batch_size.py),
    `resume_from` the checkpoint resolve_resume chose, `fingerprint` this config's recipe_data_fingerprint when the
    caller has it already (computed otherwise)."""
    problems = check_model(cfg)
    if not problems:  # the adapter is fitted to the model's skeleton only when the model itself is usable
        problems += check_peft_targets(cfg)
    problems += check_data(cfg)
    problems += liger_problems(cfg.training_args)
    problems += check_training_arguments(cfg, plan)
    problems += fsdp_quantization_problems(cfg)
    problems += eval_conf_problems(getattr(cfg, "eval_conf", None))
    problems += check_output_dir(cfg.training_args["output_dir"])
    problems += check_disk_space(cfg)
    if resume_from is not None:
        problems += check_resume_target(cfg, plan, resume_from, fingerprint)
        problems += sharded_checkpoint_problems(cfg.training_args, resume_from)
    return problems


def run_preflight(cfg, plan, resume_from: str | None, fingerprint: str | None = None) -> None:
    """Run every check before any model loads; raise one UserError listing all problems found."""
    if problems := preflight_problems(cfg, plan, resume_from, fingerprint):
        raise UserError(problems)


def check_batch_sizes(cfg) -> BatchPlan:
    """The batch plan for this launch; impossible arithmetic is a user error (also checked by `validate`)."""
    batch = cfg.batchsize_conf
    return plan_batches(
        batch.total_train_batch_size,
        batch.max_per_device_train_batch_size,
        num_processes(),
        batch.per_device_eval_batch_size,
    )


def check_before_loading(cfg) -> tuple[BatchPlan, str | None, str]:
    """Everything that needs no model, every problem at once: batch arithmetic, the checkpoint to resume from, and
    the pre-flight (output dir, disk, data, model source, resume compatibility). Shared with `finetuning validate`.
    Returns the batch plan, the checkpoint to resume from and the data fingerprint.
    """
    plan = check_batch_sizes(cfg)  # the pre-flight compares a resume target against this plan
    warn_if_unlike_single_process(cfg.training_args)  # several processes, not trained as one: said, not refused
    fingerprint = recipe_data_fingerprint(cfg)  # ... and against this
    resume_from, problems = resolve_resume(cfg.run_conf.resume_from_checkpoint, cfg.training_args["output_dir"])
    problems += preflight_problems(cfg, plan, resume_from, fingerprint)
    problems += _output_dir_reuse_problems(cfg, resume_from, fingerprint)
    if problems:
        raise UserError(problems)
    return plan, resume_from, fingerprint


def training_length(cfg) -> dict:
    """The settings that decide how many steps a run trains (with the data and the batch size): a finished run
    trained with other values is not finished for this config."""
    return {
        "max_steps": cfg.training_args.get("max_steps", -1),
        "num_train_epochs": cfg.overrides.num_train_epochs or cfg.training_args.get("num_train_epochs", 3.0),
    }


def _output_dir_reuse_problems(cfg, resume_from: str | None, fingerprint: str) -> list[str]:
    """A finished run is not trained again (RunAlreadyFinished, an outcome, not a problem); a fresh start never
    silently deletes another run's checkpoints or replaces its final model."""
    output_dir = resolve_user_path(cfg.training_args["output_dir"])
    final_name = cfg.run_conf.final_checkpoint_name
    if cfg.run_conf.resume_from_checkpoint is not False:
        finished = finished_run(
            output_dir / final_name, fingerprint, training_length(cfg), cfg.batchsize_conf.total_train_batch_size
        )
        if finished is not None:
            raise RunAlreadyFinished(finished)
    if resume_from is not None:
        return []
    return fresh_start_problems(output_dir, final_name, overwrite=cfg.overwrite_output_dir)
