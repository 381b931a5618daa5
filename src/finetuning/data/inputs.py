"""What every method's data pipeline shares: config data inputs → datasets, length filtering, the data report.

A data input is a CONCATENATION or PRECOMPUTE_WEIGHTED_MIX section of `data_conf`; its rows are checked by a
method-specific `row_problem` function (SFT messages, DPO pairs, KTO examples) so that errors carry file:line.

The order (`prepare_splits`): read and check every file → process each training file (tokenise, drop too-long
examples) → AUTO_SPLIT each file's distinct examples (seeded) → mix or concatenate the training parts. Splitting
after the length filter makes the ratio apply to usable examples (as in the Silogen engine); splitting before the
weighted mix makes sure its repetitions never put a copy of a training example into validation.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from .arrow_rows import ArrowRows, example_places, origin_label
from .readers import DataError, data_problems, file_digest, forget_read_files, scan_rows

if TYPE_CHECKING:  # datasets (and pandas) load only when data is turned into datasets, not for the checks
    from datasets import Dataset

logger = logging.getLogger(__name__)


@dataclass
class DataReport:
    """Counts a user wants to see after preprocessing (printed in the run summary)."""

    train_examples: int = 0
    eval_examples: int = 0
    dropped_too_long: dict[str, int] = field(default_factory=dict)
    truncated: dict[str, int] = field(default_factory=dict)  # filled only with length_handling: truncate
    without_assistant_marker: int = 0
    train_tokens: int = 0
    trained_tokens: int = 0
    packed_train_rows: int | None = None  # with sft_args.packing: rows the training examples were packed into
    packed_eval_rows: int | None = None  # ... and the validation examples (None: not packed)
    packing_efficiency: float | None = None  # real tokens / token slots (packed rows × max_seq_length)
    deduplicated: dict[str, int] = field(default_factory=dict)  # filled only with data_conf.deduplicate


def _path_keys(data_input, where: str | None) -> list[str] | None:
    """`data_conf.training_data.datasets[0].path`, ... for the files of a data input (`where` is its config key)."""
    return [f"{where}.datasets[{index}].path" for index in range(len(data_input.datasets))] if where else None


def read_input(
    data_input,
    row_problem: Callable[[dict], str | None],
    columns: tuple[str, ...],
    where: str | None = None,
    data_conf=None,
    report: DataReport | None = None,
) -> list[Dataset]:
    """Validate and load every dataset entry of a data input, one dataset per entry (its rows converted by its
    format, data/formats.py); the problems of all entries in one DataError. `data_conf` brings the settings every
    entry's rows share: the default system message, and deduplication (counted in `report`).

    Only `columns` are kept (and each row's line, SOURCE_LINE): optional metadata keys differ between files and
    would block concatenation. A `text` entry keeps its one `text` column: each entry is tokenised on its own,
    before the mix. Rows go into Arrow batch by batch as they are read, so a file's rows never exist all at once as
    Python objects.
    """
    keys = _path_keys(data_input, where) or [None] * len(data_input.datasets)
    system_message = getattr(data_conf, "default_system_message", None)
    deduplicate = bool(getattr(data_conf, "deduplicate", False))
    parts, problems, duplicates = [], [], 0
    for entry, key in zip(data_input.datasets, keys, strict=True):
        rows = ArrowRows(_columns(entry, columns), deduplicate)
        problems += scan_rows(entry, row_problem, key, rows.add, system_message)
        parts.append(rows.dataset(origin_label(entry)))
        duplicates += rows.duplicates
    if problems:
        raise DataError(problems)
    if deduplicate and report is not None:
        what = "validation" if where and where.endswith("validation_data") else "training"
        report.deduplicated[what] = report.deduplicated.get(what, 0) + duplicates
        if duplicates:
            logger.info("%s data: dropped %d exact duplicate rows (data_conf.deduplicate)", what, duplicates)
    return parts


def _columns(entry, columns: tuple[str, ...]) -> tuple[str, ...]:
    from .formats import entry_columns

    return entry_columns(getattr(entry, "format", "messages"), columns)


# Rows each preprocessing worker gets at least: datasets.map's batch. A worker costs about a second to start (a fork,
# the tokenizer pickled to it, its shard written to disk and read back), more than tokenising a few hundred rows.
ROWS_PER_WORKER = 1000


def map_workers(num_proc: int | None, dataset: Dataset) -> int | None:
    """`datasets.map(num_proc=...)` for `--num-preprocess-workers`: as many workers as asked for, but no more than
    one per ROWS_PER_WORKER rows, so that asking for workers never makes a small file slower; None for one."""
    workers = min(num_proc or 1, len(dataset) // ROWS_PER_WORKER)
    return workers if workers > 1 else None


@contextlib.contextmanager
def forked_workers_share_memory(workers: int | None) -> Iterator[None]:
    """Around a `datasets.map(num_proc=workers)`: the parent's objects are frozen out of the garbage collector's
    reach (`gc.freeze`) while the workers are forked from it, so that a worker's collections do not write to, and so
    copy, every page of the parent's heap (torch, transformers): measured at 20,000 conversations and 2 workers,
    420 → 260 MiB private memory per worker."""
    if not workers:
        yield
        return
    import gc

    gc.collect()
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


def tokenize_each(
    dataset: Dataset, function: Callable, what: str, num_proc: int | None = None, **map_options
) -> Dataset:
    """`dataset.map(function)` replacing every column, with the `--num-preprocess-workers` that pay off
    (`map_workers`) forked from a parent whose heap they share (`forked_workers_share_memory`)."""
    workers = map_workers(num_proc, dataset)
    with forked_workers_share_memory(workers):
        return dataset.map(
            function, remove_columns=dataset.column_names, num_proc=workers, desc=f"Tokenizing {what}", **map_options
        )


def sampled_sources(data_input, parts: list[Dataset]) -> list[tuple[Dataset, float]]:
    """(dataset, sampling weight) of each file that is trained on: weight 0 leaves a file out entirely (validation
    included); CONCATENATION weighs every file 1.0."""
    weights = [getattr(dataset, "sampling_weight", 1.0) for dataset in data_input.datasets]
    return [(part, weight) for part, weight in zip(parts, weights, strict=True) if weight > 0]


def combine(data_input, parts: list[Dataset], weights: list[float]) -> Dataset:
    """The training dataset from its processed files; a file left empty (every example too long, or all in
    validation) takes no part in the mix."""
    from .mixing import concatenate, weighted_mix

    kept = [(part, weight) for part, weight in zip(parts, weights, strict=True) if len(part)]
    kept = kept or [(parts[0], 1.0)]  # every file empty: an empty dataset, which the trainer refuses
    if data_input.type == "PRECOMPUTE_WEIGHTED_MIX":
        return weighted_mix([part for part, _ in kept], [weight for _, weight in kept], data_input.seed)
    return concatenate([part for part, _ in kept])


def input_problems(data_conf, row_problem: Callable[[dict], str | None], check: tuple | None = None) -> list[str]:
    """Every problem of every file the config names (file:line), none when all parse and pass `row_problem`;
    `check` names what `row_problem` checks, so that the outcome can be kept for unchanged files (readers.py)."""
    inputs = _listed_inputs(data_conf)
    paths = [dataset for _, data_input in inputs for dataset in data_input.datasets]
    keys = [key for where, data_input in inputs for key in _path_keys(data_input, where)]
    return data_problems(paths, row_problem, keys, check, getattr(data_conf, "default_system_message", None))


# Raised whenever the pipeline orders, splits or mixes examples differently from the same inputs (2: AUTO_SPLIT per
# file before the mix), so a checkpoint of the old order is not resumed onto the new one.
PIPELINE_VERSION = 2


def data_fingerprint(data_conf, settings: dict) -> str:
    """A digest of everything that decides which example comes at which position: the bytes of every data file, the
    data settings (mixing, split, template, `settings` such as max_seq_length) and the pipeline version. A checkpoint
    stores it, so a resume onto changed data is refused instead of continuing at a position in other examples.
    Each file's bytes are taken from its one read of the run (readers.read_file), which the checks and the recipe
    parse from too."""
    import hashlib
    import json

    digest = hashlib.sha256()
    # where the tokenized data is cached, and by how many processes it is tokenized, changes no example
    unchanging = {"prepared_path", "num_preprocess_workers"}
    described = [PIPELINE_VERSION, data_conf.model_dump(mode="json", exclude=unchanging), settings]
    digest.update(json.dumps(described, sort_keys=True, default=str).encode())
    for _, data_input in _listed_inputs(data_conf):
        for dataset in data_input.datasets:
            # missing or unreadable: the data checks report it, and nothing trains on this digest
            digest.update((file_digest(dataset) or f"\0unreadable:{dataset.path}").encode())
    return digest.hexdigest()[:16]


def _listed_inputs(data_conf) -> list[tuple[str, object]]:
    """(config key, data input) of each data input that names files."""
    inputs = [("data_conf.training_data", data_conf.training_data)]
    if data_conf.validation_data.type == "CONCATENATION":
        inputs.append(("data_conf.validation_data", data_conf.validation_data))
    return inputs


def drop_too_long(parts: list[Dataset], max_length: int, what: str, report: DataReport, setting: str) -> list[Dataset]:
    """Drop (and count, and say) examples whose `length` exceeds `max_length`, in each file's dataset; never
    truncate silently. Counted over all `parts` together: one file may lose everything, the data as a whole may not.
    The filter runs on Arrow batches (no column as Python lists)."""
    import pyarrow.compute as pc

    kept = [
        _as_arrow(part).filter(lambda table: pc.less_equal(table["length"], max_length), batched=True) for part in parts
    ]
    kept = [part.with_format(None) for part in kept]
    total, left = sum(len(part) for part in parts), sum(len(part) for part in kept)
    dropped = total - left
    report.dropped_too_long[what] = dropped
    if dropped:
        logger.warning(
            "%s data: dropped %d of %d examples longer than %s=%d tokens", what, dropped, total, setting, max_length
        )
    if dropped and not left:  # training (or evaluating) on nothing is never what was meant
        raise DataError(
            f"{setting}: all {dropped} {what} examples are longer than {max_length} tokens, so none is left; "
            f"raise {setting} or shorten the examples"
        )
    return kept


def refuse_too_long(
    parts: list[Dataset], max_length: int, what: str, setting: str, sources: list[Dataset] | None = None
) -> list[Dataset]:
    """`length_handling: error`: any example whose `length` exceeds `max_length` is a DataError, which lists the
    first MAX_REPORTED_PROBLEMS of them by `path:line` (from `sources`, the datasets `read_input` returned, one per
    part) or else by their row in the tokenized data. Nothing too long: the parts as they are."""
    import pyarrow.compute as pc

    from .readers import MAX_REPORTED_PROBLEMS

    found: list[str] = []
    total = 0
    for index, part in enumerate(parts):
        lengths = part.select_columns(["length"]).with_format("arrow")
        rows, offset = [], 0
        for batch in lengths.iter(batch_size=10_000):
            too_long = pc.indices_nonzero(pc.greater(batch["length"], max_length)).to_pylist()
            rows += [offset + row for row in too_long]
            offset += len(batch)
        total += len(rows)
        shown = rows[: max(MAX_REPORTED_PROBLEMS - len(found), 0)]
        places = example_places(sources[index] if sources else None, shown)
        for row, place in zip(shown, places, strict=True):
            tokens = part[row]["length"]
            found.append(f"{place or f'{what} data: tokenized row {row}'}: {tokens} tokens")
    if not total:
        return parts
    more = [f"... and {total - len(found)} more"] if total > len(found) else []
    raise DataError(
        [
            f"{setting}: {total} {what} examples are longer than {max_length} tokens and sft_args.length_handling is "
            "'error'; shorten them, raise the limit, or set length_handling: filter (drop them) or truncate",
            *found,
            *more,
        ]
    )


def preprocess_workers(flag: int | None, data_conf) -> int | None:
    """The processes that tokenize: the `--num-preprocess-workers` flag when given, else
    data_conf.num_preprocess_workers."""
    return flag if flag is not None else getattr(data_conf, "num_preprocess_workers", None)


def truncate_too_long(
    parts: list[Dataset], max_length: int, what: str, report: DataReport, setting: str, columns: tuple[str, ...]
) -> list[Dataset]:
    """Keep the first `max_length` tokens of every longer example: each of `columns` (input_ids, labels) is cut at
    the same position, so tokens and labels stay aligned. Counted and said, like drops; computed on Arrow batches.
    A dataset with nothing too long is returned as it is (no rewrite of its Arrow file)."""
    import pyarrow.compute as pc

    def cut(table):
        for column in columns:
            table = table.set_column(
                table.column_names.index(column), column, pc.list_slice(table[column], 0, max_length)
            )
        return table.set_column(
            table.column_names.index("length"), "length", pc.min_element_wise(table["length"], max_length)
        )

    counts = [
        sum_over_batches(part, ["length"], lambda b: pc.sum(pc.greater(b["length"], max_length)).as_py() or 0)
        for part in parts
    ]
    cut_parts = [
        _as_arrow(part).map(cut, batched=True, desc=f"Truncating {what} data").with_format(None) if count else part
        for part, count in zip(parts, counts, strict=True)
    ]
    truncated, total = sum(counts), sum(len(part) for part in parts)
    report.truncated[what] = truncated
    if truncated:
        logger.warning(
            "%s data: truncated %d of %d examples longer than %s=%d tokens to their first %d tokens",
            what,
            truncated,
            total,
            setting,
            max_length,
            max_length,
        )
    return cut_parts


def _as_arrow(dataset: Dataset) -> Dataset:
    """The dataset formatted as Arrow tables, so `map`/`filter` functions get and return Arrow data."""
    return dataset.with_format("arrow")


def sum_over_batches(dataset: Dataset, columns: Iterable[str], count: Callable, batch_size: int = 10_000) -> int:
    """Sum of `count(batch)` over the dataset read as Arrow tables of `columns`, batch by batch: token counts without
    a whole column as a Python list."""
    arrow = dataset.select_columns(list(columns)).with_format("arrow")
    return sum(int(count(batch)) for batch in arrow.iter(batch_size=batch_size))


def prepare_splits(
    data_conf,
    read: Callable[[object, str], list[Dataset]],
    process: Callable[[list[Dataset], str], list[Dataset]],
) -> tuple[Dataset, Dataset | None]:
    """Training and validation datasets: read → process each file (tokenise, drop too long) → AUTO_SPLIT each
    file's distinct examples → mix; validation sorted longest-first (OOM shows at once). See the module docstring.

    Every file is read (and checked) before any is processed, so bad training and validation data show together.
    `process` maps the datasets of one data input's files (one per file) to their processed versions."""
    from .mixing import concatenate, longest_first, split_sources

    validation_conf = data_conf.validation_data
    training_parts, *validation_parts = _read_each(read, _listed_inputs(data_conf))
    # The rows are Arrow tables now: the files' text in the per-run read memo would otherwise stay in memory through
    # tokenisation and training.
    forget_read_files()
    sources = sampled_sources(data_conf.training_data, training_parts)
    weights = [weight for _, weight in sources]
    training_parts = process([part for part, _ in sources], "training")
    evaluation = None
    if validation_conf.type == "AUTO_SPLIT":
        training_parts, evaluation = split_sources(training_parts, validation_conf.ratio, validation_conf.seed)
    elif validation_parts:
        evaluation = concatenate(process(validation_parts[0], "validation"))
    train = combine(data_conf.training_data, training_parts, weights)
    if evaluation is not None and "length" in evaluation.column_names:  # untokenised data (KTO) stays as it is
        evaluation = longest_first(evaluation)
    return train, evaluation


def _read_each(read: Callable[[object, str], list[Dataset]], inputs: list[tuple[str, object]]) -> list[list[Dataset]]:
    """`read` of every (config key, data input); the problems of all of them in one DataError."""
    results, problems = [], []
    for where, data_input in inputs:
        try:
            results.append(read(data_input, where))
        except DataError as error:
            problems.extend(error.problems)
    if problems:
        raise DataError(problems)
    return results
