"""`finetuning validate`: check data without a model, and show examples exactly as the model will see them.

Mismatched templates and wrong masks are the most common fine-tuning mistake; seeing the tokens with the trained
ones marked, before spending GPU hours, catches them.
"""

from __future__ import annotations

import importlib

from pydantic import ValidationError
from rich.console import Console
from rich.text import Text

from .check_keys import tokenized_data_key
from .checks_cache import cached_outcome
from .config.data import ChatTrainValidConfig
from .config.loading import infer_method, read_yaml
from .config.sft import SFTArguments
from .data.inputs import read_input
from .data.preference import (
    build_dpo_datasets,
    preference_data_problems,
    preference_texts,
    row_schema,
    split_prompt,
)
from .data.sft import build_sft_datasets, sft_data_problems
from .data.tokenize import IGNORE_INDEX
from .data.vectorlm_checks import waiting_note
from .errors import UserError
from .train.preflight import check_before_loading

TRAINED_OPEN, TRAINED_CLOSE = "«", "»"


def prepare_tokenizer(cfg):
    """The recipe's tokenizer set-up (train/run.py), imported when used: the training modules import torch, which a
    `validate` answered from the checks cache does not need."""
    from .train.run import prepare_tokenizer as prepare

    return prepare(cfg)


def with_data_problems(error: UserError, path: str, default_method: str | None = None) -> UserError:
    """A config error plus the problems of the data files its `data_conf` names, when that section is valid on its
    own: one run lists both, instead of the data errors appearing only once the config is fixed."""
    try:
        data = read_yaml(path)
        data_conf = ChatTrainValidConfig.model_validate(data.get("data_conf"))
    except (UserError, ValidationError):
        return error
    method = infer_method(data, default_method)
    sft_args = data.get("sft_args") if isinstance(data.get("sft_args"), dict) else {}
    require_assistant = sft_args.get("train_on_completions_only", SFTArguments().train_on_completions_only)
    if method == "sft":
        problems = sft_data_problems(data_conf, require_assistant=require_assistant is True)
    elif method in ("dpo", "kto"):
        problems = preference_data_problems(data_conf, method)
    else:
        problems = []
    return type(error)(error.problems + problems) if problems else error


def validate_data(cfg, num_workers: int | None = None) -> str:
    """Every check a training command makes before loading a model (all problems at once, as a UserError), then the
    data tokenized as training will (tokenizer only): what max_seq_length / max_length drops, and an error when
    nothing would be left. Returns the summary lines."""
    _, resume_from, _ = check_before_loading(cfg)
    data_conf = cfg.data_conf
    inputs = [data_conf.training_data] + (
        [data_conf.validation_data] if data_conf.validation_data.type == "CONCATENATION" else []
    )
    files = sum(len(data_input.datasets) for data_input in inputs)
    lines = [
        f"data OK: {files} file(s), every row parsed and has the expected shape",
        waiting_note(data_conf) or cached_tokenized_summary(cfg, num_workers),
    ]
    if resume_from is not None:
        lines.append(f"would resume from {resume_from}")
    return "\n".join(lines)


def cached_tokenized_summary(cfg, num_workers: int | None = None) -> str:
    """`tokenized_summary`, kept per exact inputs (data bytes, tokenizer files, template, limits; check_keys.py): an
    unchanged config and data are not tokenized again. Its error (nothing left to train on) is kept too."""
    key = tokenized_data_key(cfg)
    if key is None:  # a hub tokenizer: not pinned by its bytes here
        return tokenized_summary(cfg, num_workers)

    def compute() -> dict:
        try:
            return {"summary": tokenized_summary(cfg, num_workers)}
        except UserError as error:
            return {"problems": error.problems, "error": f"{type(error).__module__}:{type(error).__qualname__}"}

    outcome = cached_outcome("tokenized-data", key, compute)
    if "problems" in outcome:
        module, _, name = outcome["error"].partition(":")
        error_class = getattr(importlib.import_module(module), name, UserError)
        raise error_class(outcome["problems"])
    return outcome["summary"]


def tokenized_summary(cfg, num_workers: int | None = None) -> str:
    """Tokenize the data as the recipe will (raises the recipe's error when every example is too long)."""
    tokenizer, markers, _ = prepare_tokenizer(cfg)
    if cfg.method == "sft":
        completions = markers if cfg.sft_args.train_on_completions_only else None
        _, _, report = build_sft_datasets(cfg.data_conf, cfg.sft_args, tokenizer, completions, num_workers)
        limit = f"sft_args.max_seq_length={cfg.sft_args.max_seq_length}"
    elif cfg.method == "dpo":
        max_length = cfg.training_args.get("max_length")
        _, _, report = build_dpo_datasets(cfg.data_conf, max_length, cfg.max_prompt_length, tokenizer, num_workers)
        if max_length is None:
            return (
                f"tokenized: {report.train_examples} training / {report.eval_examples} validation pairs, no max_length"
            )
        limit = f"training_args.max_length={max_length}"
    else:  # KTO: TRL tokenizes and truncates, nothing is dropped
        return "tokenized by TRL at training time (KTO): not counted here"
    return (
        f"tokenized: {report.train_examples} training / {report.eval_examples} validation examples would be trained "
        f"on, {report.train_tokens} tokens; {_length_outcome(report, limit)}"
    )


def _length_outcome(report, limit: str) -> str:
    """What the length limit did: the examples dropped (filter) or cut (truncate), per split."""
    if report.truncated:
        counts, verb = report.truncated, "truncated"
    else:
        counts, verb = report.dropped_too_long, "dropped"
    listed = ", ".join(f"{what}: {count}" for what, count in counts.items() if count) or "none"
    return f"{verb} as longer than {limit}: {listed}"


def marked_text(input_ids: list[int], labels: list[int], tokenizer) -> Text:
    """Decoded tokens; trained runs wrapped in «» and styled, so marks survive a non-TTY (CI log, pipe)."""
    text = Text()
    run: list[int] = []
    trained_run = False

    def flush():
        if not run:
            return
        piece = tokenizer.decode(run, skip_special_tokens=False)
        if trained_run:
            text.append(TRAINED_OPEN + piece + TRAINED_CLOSE, style="bold green")
        else:
            text.append(piece, style="dim")

    for token, label in zip(input_ids, labels, strict=True):
        trained = label != IGNORE_INDEX
        if trained != trained_run:
            flush()
            run, trained_run = [], trained
        run.append(token)
    flush()
    return text


def _first_rows(parts: list, count: int):
    """The first `count` rows across the files' datasets, read one at a time (never a whole file as Python rows)."""
    for part in parts:
        for row in part.select(range(min(count, len(part)))):
            if count <= 0:
                return
            count -= 1
            yield row


def show_pairs(cfg, count: int, console: Console) -> None:
    """Preference rows as the template renders them: the prompt, then each completion continuing it."""
    tokenizer, _, _ = prepare_tokenizer(cfg)
    row_problem, columns = row_schema(cfg.method)
    rows = read_input(cfg.data_conf.training_data, row_problem, columns, data_conf=cfg.data_conf)
    for index, row in enumerate(_first_rows(rows, count)):
        if row.get("chosen_messages"):
            texts = preference_texts(row, tokenizer)
        else:
            prompt, completion = split_prompt(row["prompt_messages"], row["completion_messages"], tokenizer)
            texts = {"prompt": prompt, "desirable" if row["label"] else "undesirable": completion}
        console.rule(f"example {index}")
        for key, text in texts.items():
            console.print(Text(f"{key}: ", style="bold"), Text(text, style="dim" if key == "prompt" else "green"))


def show_examples(cfg, count: int, num_workers: int | None = None, console: Console | None = None) -> None:
    console = console or Console(soft_wrap=True)
    if cfg.method != "sft":
        return show_pairs(cfg, count, console)
    tokenizer, markers, added = prepare_tokenizer(cfg)
    completions = markers if cfg.sft_args.train_on_completions_only else None
    train, _, report = build_sft_datasets(cfg.data_conf, cfg.sft_args, tokenizer, completions, num_workers)
    console.print(
        f"template {cfg.data_conf.chat_template_name!r}: assistant turns start after "
        f"{'no marker (no generation prompt)' if markers.assistant_start is None else repr(markers.assistant_start)}, "
        f"end with {markers.assistant_end!r}; tokens added to the vocabulary: {added or 'none'}",
        markup=False,  # template markers such as [/INST] are not rich markup
    )
    console.print(
        f"{report.train_examples} training examples ({report.dropped_too_long.get('training', 0)} dropped, "
        f"{report.truncated.get('training', 0)} truncated as too long), "
        f"{report.trained_tokens} of {report.train_tokens} tokens trained; trained text is shown {TRAINED_OPEN}like this"
        f"{TRAINED_CLOSE}"
    )
    for index in range(min(count, len(train))):
        example = train[index]
        trained = sum(1 for label in example["labels"] if label != IGNORE_INDEX)
        console.rule(f"example {index}: {example['length']} tokens, {trained} trained")
        console.print(marked_text(example["input_ids"], example["labels"], tokenizer))
