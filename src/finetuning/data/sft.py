"""SFT data pipeline: read → tokenise each file → drop too-long → split → mix → sort validation longest-first → pack.

As in the Silogen engine, AUTO_SPLIT happens after tokenisation and length filtering, so the validation ratio applies
to the examples that are actually usable; unlike it, the split comes before the weighted mix, so that the mix's
repetitions never put copies of training examples into validation (data/inputs.py).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from .inputs import (
    DataReport,
    drop_too_long,
    input_problems,
    prepare_splits,
    preprocess_workers,
    read_input,
    refuse_too_long,
    sum_over_batches,
    tokenize_each,
    truncate_too_long,
)
from .packing import pack, packing_efficiency
from .readers import sft_row_problem
from .templates import Markers, completions_markers, get_template, role_order_problem, template_refusal
from .tokenize import IGNORE_INDEX, tokenize_batch

if TYPE_CHECKING:  # datasets loads when data is tokenised, not for the checks
    from datasets import Dataset

logger = logging.getLogger(__name__)
SETTING = "sft_args.max_seq_length"


def sft_row_checker(data_conf, require_assistant: bool, tokenizer=None) -> Callable[[dict], str | None]:
    """The row's shape, then the role order its chat template needs; given the tokenizer, also what the tokenizer's
    own template (keep-original) refuses. Each problem is found here, where it can name the file and line."""
    template = get_template(data_conf.chat_template_name)
    refusal = template_refusal(tokenizer) if tokenizer is not None and template.jinja is None else None

    def problem(row: dict) -> str | None:
        return (
            sft_row_problem(row, require_assistant)
            or role_order_problem(row["messages"], template)
            or (refusal(row["messages"]) if refusal else None)
        )

    return problem


def sft_data_problems(data_conf, require_assistant: bool) -> list[str]:
    """Every problem of every file the config names, as `finetuning validate` and the pre-flight report them."""
    check = ("sft", data_conf.chat_template_name, require_assistant)  # what sft_row_checker's outcome depends on
    return input_problems(data_conf, sft_row_checker(data_conf, require_assistant), check)


def tokenized_features():
    """The tokenized columns' types: 32-bit, half the size of the 64-bit integers `datasets` infers for `labels`
    (and a vocabulary or a length beyond 2**31 is not a thing)."""
    from datasets import Features, List, Value

    ids = List(Value("int32"))
    return Features({"input_ids": ids, "labels": ids, "length": Value("int32"), "assistant_turns": Value("int32")})


def _tokenize(dataset: Dataset, tokenizer, markers: Markers | None, num_proc: int | None, what: str) -> Dataset:
    """Tokenise one file; with `markers`, completions-only, which a template without a start marker refuses here."""
    return tokenize_each(
        dataset,
        tokenize_batch,
        f"{what} data",
        num_proc,
        batched=True,
        fn_kwargs={"tokenizer": tokenizer, "markers": None if markers is None else completions_markers(markers)},
        features=tokenized_features(),
    )


def limit_length(
    parts: list[Dataset], sft_args, what: str, report: DataReport, sources: list[Dataset] | None = None
) -> list[Dataset]:
    """`sft_args.length_handling`: drop (filter), cut (truncate) or refuse (error) the examples longer than
    max_seq_length; `sources` (the files' rows as read, one per part) let the refusal name file and line."""
    if sft_args.length_handling == "truncate":
        return truncate_too_long(parts, sft_args.max_seq_length, what, report, SETTING, ("input_ids", "labels"))
    if sft_args.length_handling == "error":
        return refuse_too_long(parts, sft_args.max_seq_length, what, SETTING, sources)
    return drop_too_long(parts, sft_args.max_seq_length, what, report, SETTING)


def _token_counts(train: Dataset) -> tuple[int, int]:
    """(tokens, tokens with a label) of one epoch, summed batch by batch with Arrow compute."""
    import pyarrow.compute as pc

    tokens = sum_over_batches(train, ["length"], lambda batch: pc.sum(batch["length"]).as_py() or 0)
    trained = sum_over_batches(
        train,
        ["labels"],
        lambda batch: pc.sum(pc.not_equal(pc.list_flatten(batch["labels"]), IGNORE_INDEX)).as_py() or 0,
    )
    return tokens, trained


def build_sft_datasets(
    data_conf, sft_args, tokenizer, markers: Markers | None, num_proc: int | None = None
) -> tuple[Dataset, Dataset | None, DataReport]:
    """`tokenize_sft_datasets`, tokenized once: from the on-disk cache when the data, tokenizer, template, mask and
    length settings are unchanged (data/cache.py)."""
    from .cache import cached_datasets

    settings = {"sft_args": sft_args.model_dump(mode="json"), "markers": markers and dataclasses.asdict(markers)}
    workers = preprocess_workers(num_proc, data_conf)
    return cached_datasets(
        "sft",
        data_conf,
        settings,
        tokenizer,
        lambda: tokenize_sft_datasets(data_conf, sft_args, tokenizer, markers, workers),
    )


def tokenize_sft_datasets(
    data_conf, sft_args, tokenizer, markers: Markers | None, num_proc: int | None = None
) -> tuple[Dataset, Dataset | None, DataReport]:
    """Return tokenised (train, validation or None, report); columns input_ids, labels, length."""
    import pyarrow.compute as pc

    report = DataReport()
    completions_only = markers is not None

    def process(parts: list[Dataset], what: str) -> list[Dataset]:
        tokenized = [_tokenize(part, tokenizer, markers, num_proc, what) for part in parts]
        return limit_length(tokenized, sft_args, what, report, parts)

    def read(data_input, where: str) -> list[Dataset]:
        return read_input(data_input, row_problem, ("messages",), where, data_conf, report)

    row_problem = sft_row_checker(data_conf, completions_only, tokenizer)
    train, evaluation = prepare_splits(data_conf, read, process)

    if completions_only:
        report.without_assistant_marker = sum_over_batches(
            train, ["assistant_turns"], lambda batch: pc.sum(pc.equal(batch["assistant_turns"], 0)).as_py() or 0
        )
        if report.without_assistant_marker:
            logger.warning(
                "%d training examples contain no assistant start marker %r: they train on nothing",
                report.without_assistant_marker,
                markers.assistant_start,
            )
    report.train_examples = len(train)
    report.eval_examples = 0 if evaluation is None else len(evaluation)
    report.train_tokens, report.trained_tokens = _token_counts(train)
    train = train.remove_columns("assistant_turns")
    if evaluation is not None:
        evaluation = evaluation.remove_columns("assistant_turns")
    return *pack_splits(train, evaluation, sft_args, report, num_proc), report


def pack_splits(
    train: Dataset, evaluation: Dataset | None, sft_args, report: DataReport, num_proc: int | None = None
) -> tuple[Dataset, Dataset | None]:
    """`sft_args.packing`, after length handling and the split and mix (so that no packed row mixes training and
    validation examples); validation too unless `eval_packing` is false. The report gains the packed row counts and
    how full the training rows are."""
    if not sft_args.packing:
        return train, evaluation
    train = pack(train, sft_args.max_seq_length, sft_args.packing, num_proc)
    report.packed_train_rows = len(train)
    report.packing_efficiency = packing_efficiency(len(train), report.train_tokens, sft_args.max_seq_length)
    if evaluation is not None and sft_args.eval_packing:
        evaluation = pack(evaluation, sft_args.max_seq_length, sft_args.packing, num_proc)
        report.packed_eval_rows = len(evaluation)
    logger.info(
        "data: %d training examples packed into %d rows of up to %d tokens (%.1f%% of their token slots used)",
        report.train_examples,
        report.packed_train_rows,
        sft_args.max_seq_length,
        100 * report.packing_efficiency,
    )
    return train, evaluation
