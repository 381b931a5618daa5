"""Command line: argument parsing and dispatch only.

finetuning --version
finetuning [global options] sft CONFIG
finetuning [global options] validate CONFIG [--show N]
finetuning [global options] preprocess CONFIG
finetuning schema
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys

from .config import config_class_for, config_json_schema, load_any_config, render_config_reference
from .errors import USER_ERROR_EXIT, UserError, report_user_error
from .tracking.mlflow import MlflowOptions
from .train.checkpoints import RunAlreadyFinished
from .train.distributed import is_main_process
from .train.saving import package_versions

logger = logging.getLogger("finetuning")


def version_line() -> str:
    """`finetuning X (torch A, transformers B, ...)`: what a bug report needs (read from metadata, nothing imported)."""
    versions = package_versions()
    own = versions.pop("finetuning", "unknown")
    return f"finetuning {own} (" + ", ".join(f"{name} {version}" for name, version in versions.items()) + ")"


def build_parser() -> argparse.ArgumentParser:
    # raw description: the --version line is printed as it is, not wrapped at the terminal width
    parser = argparse.ArgumentParser(
        prog="finetuning", description="Finetuning", formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--version", action="version", version=version_line(), help="Print the versions and exit")
    parser.add_argument("--logging-level", default="INFO", help="DEBUG, INFO, WARNING or ERROR")
    parser.add_argument(
        "--num-preprocess-workers",
        type=int,
        default=None,
        help="Number of processes to use for preprocessing (tokenizing); at most one per 1,000 examples of a file",
    )
    parser.add_argument("--mlflow-server-uri", help="MLflow server URI. Can be local path.")
    parser.add_argument("--experiment-name", help="Experiment name that is used for MLflow tracking")
    parser.add_argument("--hf-mlflow-log-artifacts", help="Whether to store model artifacts in MLFlow")
    commands = parser.add_subparsers(
        dest="command", required=True, metavar="{sft,dpo,generate,validate,preprocess,schema}"
    )
    sft = commands.add_parser("sft", help="Supervised FineTuning")
    sft.add_argument("config", help="Path to the experiment's YAML config file.")
    dpo = commands.add_parser(
        "dpo",
        help="Direct Preference Optimization and related preference methods (every TRL DPO loss type such as IPO, "
        "and KTO with `method: kto`)",
    )
    dpo.add_argument("config", help="Path to the experiment's YAML config file.")
    validate = commands.add_parser("validate", help="Check a config and the data it points to, without loading a model")
    validate.add_argument("config", help="Path to the experiment's YAML config file.")
    validate.add_argument(
        "--show",
        type=int,
        default=0,
        metavar="N",
        help="Render N tokenized training examples with trained tokens marked",
    )
    preprocess = commands.add_parser(
        "preprocess",
        help="Do the data work of a run only (check, tokenize, cache) and print where the cache is: prepare data on a "
        "CPU node before a GPU job",
    )
    preprocess.add_argument("config", help="Path to the experiment's YAML config file.")
    generate = commands.add_parser(
        "generate", help="Generate answers with a (fine-tuned) model for the prompts a generate config lists"
    )
    generate.add_argument("config", help="Path to the generation YAML config file.")
    generate.add_argument("output", help="Where to write the YAML list of prompts and answers.")
    schema = commands.add_parser("schema", help="Print the config JSON Schema (for editors / yaml-language-server)")
    schema.add_argument(
        "--markdown", action="store_true", help="Print the Markdown config reference (docs/config-reference*.md)"
    )
    schema.add_argument("--method", choices=("sft", "dpo", "kto"), default="sft", help="Which method's config")
    return parser


METHODS_OF_COMMAND = {"sft": ("sft",), "dpo": ("dpo", "kto")}


def _load(path: str, command: str | None = None):
    """Load the config of the method it names (none: the command's, as in the Silogen CLI); a config for another
    command is a user error, not a surprise."""
    default_method = METHODS_OF_COMMAND[command][0] if command is not None else None
    try:
        cfg = load_any_config(path, default_method)
    except UserError as error:  # the data files' problems too, in the same report
        from .validate import with_data_problems

        raise with_data_problems(error, path, default_method) from None
    if command is not None and cfg.method not in METHODS_OF_COMMAND[command]:
        other = next(name for name, methods in METHODS_OF_COMMAND.items() if cfg.method in methods)
        raise UserError(f"method: this config is for `{cfg.method}`; run it with `finetuning {other} {path}`")
    for notice in cfg.notices:
        logger.warning(notice)
    return cfg


def _command_train(args) -> int:
    cfg = _load(args.config, args.command)
    # here, not at the top: the training modules import torch, which `--help`, `schema` and errors must not wait for
    from .train.run import RunOptions

    if args.command == "sft":
        from .sft import run_sft as run
    else:
        from .dpo import run_preference as run
    options = RunOptions(
        num_preprocess_workers=args.num_preprocess_workers,
        mlflow=MlflowOptions(args.mlflow_server_uri, args.experiment_name, args.hf_mlflow_log_artifacts),
    )
    result = run(cfg, options)
    if not is_main_process():  # one process of a multi-process run speaks for all
        return 0
    if result.stopped_by is None:
        print(f"Training finished. Final model: {result.final_dir}")
    else:
        print(_resume_hint(result, cfg, args))
    return 0


def _resume_hint(result, cfg, args) -> str:
    """A stop on request is a success: say where the run is and the exact way to continue it."""
    lines = [f"Training stopped by {result.stopped_by} at step {result.step} of {result.max_steps}."]
    if result.checkpoint is None:
        return lines[0] + " No checkpoint was saved."
    lines.append(f"Checkpoint saved: {result.checkpoint}")
    command = f"finetuning {args.command} {args.config}"
    if cfg.run_conf.resume_from_checkpoint in ("auto", True):
        lines.append(f"To resume, run the same command again: {command}")
    else:
        lines.append(
            "To resume, set run_conf.resume_from_checkpoint: auto (or the checkpoint path) and run: " + command
        )
    return "\n".join(lines)


def _command_validate(args) -> int:
    from .validate import show_examples, validate_data

    cfg = _load(args.config)
    summary = validate_data(cfg, args.num_preprocess_workers)
    print(f"config OK: {args.config}")
    print(summary)
    if args.show:
        show_examples(cfg, args.show, args.num_preprocess_workers)
    return 0


def _command_preprocess(args) -> int:
    from .preprocess import preprocess

    cfg = _load(args.config)
    print(preprocess(cfg, args.num_preprocess_workers))
    return 0


def _command_schema(args) -> int:
    config_class = config_class_for(args.method)
    if args.markdown:
        print(render_config_reference(config_class))
    else:
        print(json.dumps(config_json_schema(config_class), indent=2))
    return 0


def _command_generate(args) -> int:
    from .tools.generate import run_generate_command

    return run_generate_command(args.config, args.output)


COMMANDS = {
    "sft": _command_train,
    "dpo": _command_train,
    "generate": _command_generate,
    "validate": _command_validate,
    "preprocess": _command_preprocess,
    "schema": _command_schema,
}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    main_process = is_main_process()
    # the other processes of a multi-process run do the same work: only their errors are news
    level = args.logging_level.upper() if main_process else "ERROR"
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    if not sys.stderr.isatty():  # progress bars only where a person watches them
        os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")
    try:
        return COMMANDS[args.command](args)
    except RunAlreadyFinished as done:  # re-running a finished run: its outputs stay as they are
        if main_process:
            print(done.finished.describe())
        return 0
    except UserError as error:  # every process finds the same problems: the main process lists them
        return report_user_error(error) if main_process else USER_ERROR_EXIT
    except KeyboardInterrupt:  # Ctrl-C outside training (loading, preprocessing): nothing to save, no traceback
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
