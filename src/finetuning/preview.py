"""`finetuning validate`: check data without a model, and show examples exactly as the model will see them.

Mismatched templates and wrong masks are the most common fine-tuning mistake; seeing the tokens with the trained
ones marked, before spending GPU hours, catches them.
"""

from __future__ import annotations

from rich.console import Console
from rich.text import Text

from .data.inputs import read_input
from .data.preference import preference_texts, row_schema, split_prompt
from .data.sft import build_sft_datasets
from .data.tokenize import IGNORE_INDEX
from .train.run import check_before_loading, prepare_tokenizer

TRAINED_OPEN, TRAINED_CLOSE = "«", "»"


def validate_data(cfg) -> str:
    """Every check a training command makes before loading a model (all problems at once, as a UserError);
    returns a one-line summary."""
    check_before_loading(cfg)
    data_conf = cfg.data_conf
    inputs = [data_conf.training_data] + (
        [data_conf.validation_data] if data_conf.validation_data.type == "CONCATENATION" else []
    )
    files = sum(len(data_input.datasets) for data_input in inputs)
    return f"data OK: {files} file(s), every row parsed and has the expected shape"


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


def show_pairs(cfg, count: int, console: Console) -> None:
    """Preference rows as the template renders them: the prompt, then each completion continuing it."""
    tokenizer, _, _ = prepare_tokenizer(cfg)
    row_problem, columns = row_schema(cfg.method)
    rows = [row for part in read_input(cfg.data_conf.training_data, row_problem, columns) for row in part]
    for index, row in enumerate(rows[:count]):
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
        f"template {cfg.data_conf.chat_template_name!r}: assistant turns start after {markers.assistant_start!r}, "
        f"end with {markers.assistant_end!r}; tokens added to the vocabulary: {added or 'none'}",
        markup=False,  # template markers such as [/INST] are not rich markup
    )
    console.print(
        f"{report.train_examples} training examples ({report.dropped_too_long.get('training', 0)} dropped as too long), "
        f"{report.trained_tokens} of {report.train_tokens} tokens trained; trained text is shown {TRAINED_OPEN}like this"
        f"{TRAINED_CLOSE}"
    )
    for index in range(min(count, len(train))):
        example = train[index]
        trained = sum(1 for label in example["labels"] if label != IGNORE_INDEX)
        console.rule(f"example {index}: {example['length']} tokens, {trained} trained")
        console.print(marked_text(example["input_ids"], example["labels"], tokenizer))
