"""Command line: argument parsing and dispatch only.

finetuning --version
finetuning [global options] sft CONFIG [--section.key VALUE ...]   (dotted overrides: every config command)
finetuning [global options] validate CONFIG [--show N]
finetuning [global options] preprocess CONFIG
finetuning [global options] convert CONFIG
finetuning [global options] spectrum CONFIG
finetuning schema
finetuning worker [runpod SDK flags: --test_input '{...}', --rp_serve_api --rp_api_port N, ...]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import textwrap

from .config import config_class_for, config_json_schema, render_config_reference
from .config.dialects import DIALECTS, relocate
from .config.dotted import EXAMPLES, NO_OVERRIDES, parse_arguments
from .config.loading import load_config_file
from .errors import USER_ERROR_EXIT, UserError, report_user_error
from .lean_imports import keep_unneeded_libraries_out
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


def _config_command(commands, name: str, help_text: str) -> argparse.ArgumentParser:
    """A subcommand that takes an experiment config (of any dialect) as its one positional argument."""
    command = commands.add_parser(name, help=help_text)
    command.add_argument("config", help="Path to the experiment's YAML config file.")
    return command


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
    parser.add_argument(
        "--dialect",
        choices=list(DIALECTS),
        help="Read the config in this dialect instead of detecting it from its keys (see docs/dialects/)",
    )
    commands = parser.add_subparsers(
        dest="command", required=True, metavar="{sft,dpo,generate,validate,preprocess,convert,spectrum,schema,worker}"
    )
    _config_command(commands, "sft", "Supervised FineTuning")
    _config_command(
        commands,
        "dpo",
        "Direct Preference Optimization and related preference methods (every TRL DPO loss type such as IPO, "
        "and KTO with `method: kto`)",
    )
    validate = _config_command(
        commands, "validate", "Check a config and the data it points to, without loading a model"
    )
    validate.add_argument(
        "--show",
        type=int,
        default=0,
        metavar="N",
        help="Render N tokenized training examples with trained tokens marked",
    )
    _config_command(
        commands,
        "preprocess",
        "Do the data work of a run only (check, tokenize, cache) and print where the cache is: prepare data on a "
        "CPU node before a GPU job",
    )
    _config_command(
        commands, "convert", "Print a config of any dialect as the native YAML it is translated to (notices on stderr)"
    )
    _config_command(
        commands,
        "spectrum",
        "Compute the Spectrum selection (SNR of each decoder weight matrix; which are trained) without training: "
        "the table on stderr, the spectrum.yaml content on stdout",
    )
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
    worker_help = (
        "Run the serverless fine-tuning worker (runpod; docs/worker.md): each job a run of its own. The runpod "
        "SDK's flags pass through: --test_input '{\"input\": ...}' runs one job, --rp_serve_api --rp_api_port N "
        "serves the local test API"
    )
    commands.add_parser("worker", help=worker_help, description=worker_help)
    for name in OVERRIDE_COMMANDS:
        if name in commands.choices:
            _takes_overrides(commands.choices[name])
    return parser


# Commands whose config may be changed from the command line: `--section.key VALUE` after the config path.
OVERRIDE_COMMANDS = ("sft", "dpo", "validate", "preprocess", "convert", "spectrum")

OVERRIDES_EPILOG = (
    textwrap.fill(
        "config overrides: --KEY VALUE (or --KEY=VALUE) after the config path sets a key of the config as written, in "
        "its own dialect, before it is translated. KEY is the dotted path of the key (list items by index: "
        "datasets.0.path); VALUE is read as YAML (1e-4, true, null, [a, b]). A key the config does not have must be one "
        "its dialect knows. The overrides are logged and recorded in the saved finetuning_config.yaml "
        "(_provenance.overrides). For example:",
        width=100,
    )
    + "\n"
    + "".join(f"  {dialect:<10} {example}\n" for dialect, example in EXAMPLES.items())
)


def _takes_overrides(command: argparse.ArgumentParser) -> None:
    """Show the dotted overrides in the command's usage and --help (argparse itself leaves them to `main`)."""
    command.formatter_class = argparse.RawDescriptionHelpFormatter
    command.usage = command.format_usage().removeprefix("usage: ").strip() + " [--KEY VALUE ...]"
    command.epilog = OVERRIDES_EPILOG


def _own_options(parser: argparse.ArgumentParser, command: str) -> tuple[str, ...]:
    """The command's own options (a mistyped one is named in the unknown-override error)."""
    subcommands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))  # noqa: SLF001
    return tuple(option for option in subcommands.choices[command]._option_string_actions if option.startswith("--"))


METHODS_OF_COMMAND = {"sft": ("sft",), "dpo": ("dpo", "kto")}


def _load(path: str, command: str | None = None, dialect: str | None = None, args=None):
    """Load the config (any dialect: `dialect`, or detected) of the method it names (none: the command's, as in the
    Silogen CLI); a config for another command is a user error, not a surprise. Where the config's keys came from is
    kept on `args`, so that a later problem at a native key is reported at the user's key (see `main`)."""
    default_method = METHODS_OF_COMMAND[command][0] if command is not None else None
    overrides = getattr(args, "overrides", NO_OVERRIDES)
    try:
        loaded = load_config_file(path, default_method, dialect, overrides)
    except UserError as error:  # the data files' problems too, in the same report (those the file names)
        if overrides:
            raise
        from .validate import with_data_problems

        raise with_data_problems(error, path, default_method) from None
    cfg = loaded.config
    if args is not None:
        args.source_paths = loaded.translation.source_paths
    if command is not None and cfg.method not in METHODS_OF_COMMAND[command]:
        other = next(name for name, methods in METHODS_OF_COMMAND.items() if cfg.method in methods)
        raise UserError(f"method: this config is for `{cfg.method}`; run it with `finetuning {other} {path}`")
    for notice in cfg.notices:
        logger.warning(notice)
    return cfg


def _command_train(args) -> int:
    cfg = _load(args.config, args.command, args.dialect, args)
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
        return USER_ERROR_EXIT if result.error is not None else 0
    if result.stopped_by is None:
        print(f"Training finished. Final model: {result.final_dir}")
    else:
        print(_resume_hint(result, cfg, args))
    if result.error is not None:  # stopped as failed (the loss watchdog): a user error, at the user's key
        raise UserError(result.error)
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

    cfg = _load(args.config, dialect=args.dialect, args=args)
    summary = validate_data(cfg, args.num_preprocess_workers)
    print(f"config OK: {args.config}")
    print(summary)
    if args.show:
        show_examples(cfg, args.show, args.num_preprocess_workers)
    return 0


def _command_preprocess(args) -> int:
    from .preprocess import preprocess

    cfg = _load(args.config, dialect=args.dialect, args=args)
    print(preprocess(cfg, args.num_preprocess_workers))
    return 0


def _command_convert(args) -> int:
    """The native config a dialect config is translated to, validated, as YAML on stdout (notices on stderr)."""
    import yaml

    overrides = getattr(args, "overrides", NO_OVERRIDES)
    loaded = load_config_file(args.config, dialect=args.dialect, overrides=overrides)
    for notice in loaded.config.notices:
        logger.warning(notice)
    context = loaded.translation.context
    print(f"# {args.config} ({loaded.dialect} dialect) as a native config, translated for {context.describe()}")
    print(yaml.safe_dump(loaded.translation.native, sort_keys=False, allow_unicode=True), end="")
    return 0


def _command_spectrum(args) -> int:
    from .model.spectrum import spectrum_command

    table, document = spectrum_command(_load(args.config, dialect=args.dialect, args=args))
    print(table, file=sys.stderr, end="")
    print(document, end="")
    return 0


def _command_schema(args) -> int:
    config_class = config_class_for(args.method)
    if args.markdown:
        print(render_config_reference(config_class))
    else:
        print(json.dumps(config_json_schema(config_class), indent=2))
    return 0


def _command_worker(args) -> int:
    from .worker.serve import serve

    return serve(args.sdk_args)


def _command_generate(args) -> int:
    from .tools.generate import run_generate_command

    return run_generate_command(args.config, args.output)


COMMANDS = {
    "sft": _command_train,
    "dpo": _command_train,
    "generate": _command_generate,
    "validate": _command_validate,
    "preprocess": _command_preprocess,
    "convert": _command_convert,
    "spectrum": _command_spectrum,
    "schema": _command_schema,
    "worker": _command_worker,
}


# Commands that take an experiment config and may import the training libraries (the others never load peft).
TRAINING_COMMANDS = ("sft", "dpo", "validate", "preprocess", "spectrum")


def _check_extra(parser: argparse.ArgumentParser, command: str, extra: list[str]) -> None:
    """What argparse did not know: the runpod SDK's flags for `worker`, config overrides for a config command (read
    in `main`); anything else, and a global option given after the command, is argparse's usage error."""
    if command == "worker" or not extra:
        return
    if command not in OVERRIDE_COMMANDS:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    for token in extra:
        if token.partition("=")[0] in parser._option_string_actions:  # noqa: SLF001
            name = token.partition("=")[0]
            parser.error(f"{name} is an option of finetuning itself: give it before the command ({name} ... {command})")


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    _check_extra(parser, args.command, extra)
    args.sdk_args = extra if args.command == "worker" else []  # what `worker` hands to the runpod SDK
    main_process = is_main_process()
    # the other processes of a multi-process run do the same work: only their errors are news
    level = args.logging_level.upper() if main_process else "ERROR"
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    if not sys.stderr.isatty():  # progress bars only where a person watches them
        os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")
    # a process of its own (see lean_imports.py), unless the config or an override (`--load_in_4bit true`) needs them
    if argv is None and args.command in TRAINING_COMMANDS:
        keep_unneeded_libraries_out(args.config, " ".join(extra))
    try:
        if args.command in OVERRIDE_COMMANDS:
            args.overrides = parse_arguments(extra, _own_options(parser, args.command))
        return COMMANDS[args.command](args)
    except RunAlreadyFinished as done:  # re-running a finished run: its outputs stay as they are
        if main_process:
            print(done.finished.describe())
        return 0
    except UserError as error:  # every process finds the same problems: the main process lists them
        error.problems = relocate(error.problems, getattr(args, "source_paths", {}))  # at the keys the user wrote
        return report_user_error(error) if main_process else USER_ERROR_EXIT
    except KeyboardInterrupt:  # Ctrl-C outside training (loading, preprocessing): nothing to save, no traceback
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
