"""VectorLM's dataset preprocessing (`data_conf.preprocess`): raw text rows → tokenized rows in a `save_to_disk`
directory, exactly as VectorLM's `preprocess_data.py` writes them (peer-semantics.md §2), which a dataset entry of
`format: tokenized` then trains on as given.

Per row: text = bos + pre_pend + text + eos as strings (bos/eos only with add_bos_eos_tokens and no packing),
tokenized without special tokens. With a separator, the text is split after its first occurrence and both parts
are tokenized alone (the boundary is then exact); the prefix is not trained. VectorLM's label layout is kept: with
bos/eos added, the first label is the bos id, not -100 (a causal LM never predicts position 0, so it trains
nothing). `truncate` keeps max_seq_len - 1 tokens + eos. Packing joins the rows of each 2,000-row batch (`full`) or
takes each row alone (`partial`), cuts windows of max_seq_len - 2 tokens (room for bos/eos; max_seq_len without
them) sharing `overlap` tokens, and wraps bos/eos ids around every window, labels included.

Where we differ, on purpose: rows without the separator are dropped *and counted* (VectorLM drops them silently),
and all dropped is an error; a window wholly inside the previous one is not written (data/packing.py `windows`);
VectorLM's own `full` branch returns an empty result (its result dict is never filled in), and its 8 map workers
would cut the joined stream at their shard boundaries too: here `full` packs as its code and docs mean, batch by
batch over the whole dataset in order.
"""

from __future__ import annotations

import itertools
import logging
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import UserError, did_you_mean
from ..paths import resolve_user_path
from .sources import hub_offline
from .tokenize import IGNORE_INDEX
from .vectorlm_checks import KEY, LENGTH_KEY, chunk_size, preprocess_problems

if TYPE_CHECKING:
    from datasets import Dataset

logger = logging.getLogger(__name__)

PACK_BATCH_ROWS = 2000  # VectorLM's packing map batch: `full` packing joins the rows of one batch
COLUMNS = ("input_ids", "labels", "attention_mask", "id")


@dataclass
class PreprocessReport:
    """What the preprocessing did, for `finetuning preprocess` and the log."""

    save_path: str
    rows_in: int = 0
    dropped_without_separator: int = 0
    truncated: int = 0
    longer_than_max: int = 0  # rows left longer than max_seq_len (neither truncate nor packing)
    rows_out: int = 0
    tokens: int = 0
    trained_tokens: int = 0

    def lines(self) -> list[str]:
        return [
            f"preprocessed data written to {self.save_path}",
            f"rows in: {self.rows_in}",
            f"rows dropped without the separator: {self.dropped_without_separator}",
            f"rows out: {self.rows_out}",
            f"tokens: {self.tokens} ({self.trained_tokens} trained)",
        ]


def special_ids(conf, tokenizer) -> tuple[int | None, int | None]:
    """(bos id, eos id); a missing one the settings need is an error, as in VectorLM (which raises TypeError)."""
    bos, eos = tokenizer.bos_token_id, tokenizer.eos_token_id
    if conf.add_bos_eos_tokens and not (isinstance(bos, int) and isinstance(eos, int)):
        missing = " and ".join(name for name, value in (("bos", bos), ("eos", eos)) if not isinstance(value, int))
        raise UserError(
            f"{KEY}.add_bos_eos_tokens: the tokenizer has no {missing} token to add; set add_bos_eos_tokens: false, "
            "or use a tokenizer that has both"
        )
    if conf.truncate and not isinstance(eos, int):
        raise UserError(f"{KEY}.truncate: a truncated row ends with eos, and the tokenizer has none")
    return bos, eos


# --- loading ------------------------------------------------------------------------------------------------------


def load_raw(conf) -> Dataset:
    """The rows to preprocess: load_from_disk(load_path) (from_disk) or load_dataset(load_path, split), one split."""
    if conf.from_disk:
        loaded, where = _load_saved(conf), str(resolve_user_path(conf.load_path))
    else:
        loaded, where = _load_hub(conf), repr(conf.load_path)
    return _one_split(loaded, conf, where)


def _load_saved(conf):
    from datasets import load_from_disk

    path = resolve_user_path(conf.load_path)
    if not path.exists():
        raise UserError(f"{KEY}.load_path: {path}: not found")
    if not ((path / "state.json").is_file() or (path / "dataset_dict.json").is_file()):
        raise UserError(
            f"{KEY}.load_path: {path}: not a directory written by datasets.save_to_disk (no state.json or "
            "dataset_dict.json); set from_disk: false to read it with datasets.load_dataset"
        )
    return load_from_disk(str(path))


def _load_hub(conf):
    from datasets import load_dataset

    if hub_offline() and not resolve_user_path(conf.load_path).exists():
        raise UserError(
            f"{KEY}.load_path: {conf.load_path!r} is not a local path, and HF_HUB_OFFLINE is set: the Hugging Face "
            "Hub dataset of that id cannot be downloaded; save it with save_to_disk and set from_disk: true, or "
            "unset HF_HUB_OFFLINE"
        )
    try:
        return load_dataset(conf.load_path, split=conf.split)
    except Exception as error:  # noqa: BLE001 - the Hub's and the builder's errors are the user's to read
        first = (str(error).strip().splitlines() or [type(error).__name__])[0]
        raise UserError(f"{KEY}.load_path: datasets.load_dataset({conf.load_path!r}) failed: {first}") from None


def _one_split(loaded, conf, where: str) -> Dataset:
    from datasets import DatasetDict

    if isinstance(loaded, DatasetDict):
        if conf.split is None or conf.split not in loaded:
            given = "no split is set" if conf.split is None else f"it has no split {conf.split!r}"
            raise UserError(f"{KEY}.split: {where} holds splits {', '.join(loaded)} and {given}; set split")
        loaded = loaded[conf.split]
    elif conf.split is not None and conf.from_disk:
        logger.info("%s.split: %s is a single dataset; split %r is not needed", KEY, where, conf.split)
    _check_text_column(loaded, conf.data_field, where)
    return loaded


def _check_text_column(dataset: Dataset, field: str, where: str) -> None:
    """The data_field column exists and every row holds a string (VectorLM would tokenize `None` as the text)."""
    import pyarrow.compute as pc
    from datasets import Value

    columns = dataset.column_names
    if field not in columns:
        raise UserError(
            f"{KEY}.data_field: {where} has no column {field!r} (columns: {', '.join(columns)})"
            f"{did_you_mean(field, columns)}"
        )
    feature = dataset.features[field]
    if not (isinstance(feature, Value) and feature.dtype in ("string", "large_string")):
        raise UserError(f"{KEY}.data_field: column {field!r} of {where} holds {feature}, not text")
    column = dataset.data.column(field)
    if column.null_count:
        first = pc.index(pc.is_null(column), True).as_py()
        raise UserError(f"{where}: row {first}: {field!r} is null ({column.null_count} rows without text)")
    if len(dataset) == 0:
        raise UserError(f"{KEY}.load_path: {where} has no rows")


# --- tokenizing and packing ---------------------------------------------------------------------------------------


def tokenize_rows(batch: dict, tokenizer, conf, add_bos_eos: bool, max_seq_len: int) -> dict:
    """VectorLM's `tokenize_dataset` on one map batch (module docstring); rows without the separator are left out."""
    bos, eos = (tokenizer.bos_token, tokenizer.eos_token) if add_bos_eos else ("", "")
    texts = [f"{bos}{conf.pre_pend or ''}{text}{eos}" for text in batch[conf.data_field]]
    if conf.separator is None:
        ids = tokenizer(texts, add_special_tokens=False)["input_ids"]
        rows = [(list(row), list(row)) for row in ids]
    else:
        cuts = [(text, text.find(conf.separator) + len(conf.separator)) for text in texts if conf.separator in text]
        split = [(text[:cut], text[cut:]) for text, cut in cuts]
        prefixes = tokenizer([prefix for prefix, _ in split], add_special_tokens=False)["input_ids"] if split else []
        rests = tokenizer([rest for _, rest in split], add_special_tokens=False)["input_ids"] if split else []
        rows = [
            (list(prefix) + list(rest), _separated_labels(prefix, rest, tokenizer.bos_token_id, add_bos_eos))
            for prefix, rest in zip(prefixes, rests, strict=True)
        ]
    out: dict[str, list] = {"input_ids": [], "labels": [], "attention_mask": [], "truncated": []}
    for ids, labels in rows:
        cut = conf.truncate and len(ids) > max_seq_len
        if cut:  # VectorLM cuts ids and labels alike: max_seq_len - 1 tokens, then eos (trained)
            ids = [*ids[: max_seq_len - 1], tokenizer.eos_token_id]
            labels = [*labels[: max_seq_len - 1], tokenizer.eos_token_id]
        out["input_ids"].append(ids)
        out["labels"].append(labels)
        out["attention_mask"].append([1] * len(ids))
        out["truncated"].append(cut)
    return out


def _separated_labels(prefix: list[int], rest: list[int], bos_id: int | None, add_bos_eos: bool) -> list[int]:
    """The prefix (separator included) not trained; VectorLM keeps the bos label when it added bos."""
    if add_bos_eos:
        return [bos_id] + [IGNORE_INDEX] * (len(prefix) - 1) + list(rest)
    return [IGNORE_INDEX] * len(prefix) + list(rest)


def pack_rows(batch: dict, size: int, overlap: int, bos: list[int], eos: list[int], per_example: bool) -> dict:
    """VectorLM's `pack_examples` on one map batch: `full` joins the batch's rows into one stream, `partial`
    (per_example) takes each row alone; each window of `size` tokens (stride size - overlap) wrapped in bos/eos."""
    from .packing import windows

    if per_example:
        streams = list(zip(batch["input_ids"], batch["labels"], strict=True))
    else:
        streams = [(list(itertools.chain(*batch["input_ids"])), list(itertools.chain(*batch["labels"])))]
    out: dict[str, list] = {"input_ids": [], "labels": [], "attention_mask": []}
    for ids, labels in streams:
        for start, end in windows(len(ids), size, overlap):
            out["input_ids"].append(bos + list(ids[start:end]) + eos)
            out["labels"].append(bos + list(labels[start:end]) + eos)
            out["attention_mask"].append([1] * (len(bos) + end - start + len(eos)))
    return out


def _features(extra: dict | None = None):
    from datasets import Features, List, Value

    ids = List(Value("int32"))
    return Features({"input_ids": ids, "labels": ids, "attention_mask": List(Value("int8")), **(extra or {})})


def preprocess(conf, tokenizer, max_seq_len: int, num_workers: int | None = None) -> tuple[Dataset, PreprocessReport]:
    """Run `data_conf.preprocess` (module docstring) and write the result to its save_path (save_to_disk, atomically:
    a temporary directory beside it, then a rename); returns the written dataset, memory-mapped from there."""
    from datasets import Value

    from .inputs import map_workers

    if problems := preprocess_problems(conf, max_seq_len):
        raise UserError(problems)
    bos_id, eos_id = special_ids(conf, tokenizer)
    raw = load_raw(conf)
    report = PreprocessReport(str(resolve_user_path(conf.save_path)), rows_in=len(raw))
    packing = conf.packing_type is not None
    target = resolve_user_path(conf.save_path)
    target.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".tmp-{target.name}-"))
    try:
        tokenized = raw.map(
            tokenize_rows,
            batched=True,
            remove_columns=raw.column_names,
            num_proc=map_workers(num_workers, raw),
            fn_kwargs={
                "tokenizer": tokenizer,
                "conf": conf,
                "add_bos_eos": conf.add_bos_eos_tokens and not packing,  # with packing, ids around every chunk
                "max_seq_len": max_seq_len,
            },
            features=_features({"truncated": Value("bool")}),
            cache_file_name=str(work / "tokenized.arrow"),  # never beside load_path's own files
            load_from_cache_file=False,
            desc="Tokenizing (data_conf.preprocess)",
        )
        _count_rows(tokenized, conf, report, max_seq_len)
        tokenized = tokenized.remove_columns("truncated")
        if packing:
            wrap = ([bos_id], [eos_id]) if conf.add_bos_eos_tokens else ([], [])
            tokenized = tokenized.map(
                pack_rows,
                batched=True,
                batch_size=PACK_BATCH_ROWS,
                remove_columns=tokenized.column_names,
                fn_kwargs={
                    "size": chunk_size(conf, max_seq_len),
                    "overlap": conf.overlap,
                    "bos": wrap[0],
                    "eos": wrap[1],
                    "per_example": conf.packing_type == "partial",
                },
                features=_features(),
                cache_file_name=str(work / "packed.arrow"),
                load_from_cache_file=False,
                desc=f"Packing ({conf.packing_type})",
            )
        result = tokenized.add_column("id", list(range(len(tokenized))))
        _count_tokens(result, report)
        _save_atomically(result, target, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    from datasets import load_from_disk

    return load_from_disk(str(target)), report


def _count_rows(tokenized: Dataset, conf, report: PreprocessReport, max_seq_len: int) -> None:
    """Rows dropped for want of the separator (all dropped is an error), truncated, and left too long."""
    import pyarrow.compute as pc

    report.dropped_without_separator = report.rows_in - len(tokenized)
    if report.dropped_without_separator:
        logger.warning(
            "%s.separator: %d of %d rows do not contain %r and were dropped",
            KEY,
            report.dropped_without_separator,
            report.rows_in,
            conf.separator,
        )
    if not len(tokenized):
        raise UserError(
            f"{KEY}.separator: none of the {report.rows_in} rows contains {conf.separator!r}, so none is left; "
            "check the separator (it is matched exactly, after pre_pend)"
        )
    table = tokenized.data
    report.truncated = pc.sum(table.column("truncated")).as_py() or 0
    if conf.packing_type is None and not conf.truncate:
        lengths = pc.list_value_length(table.column("input_ids"))
        report.longer_than_max = pc.sum(pc.greater(lengths, max_seq_len)).as_py() or 0
        if report.longer_than_max:  # VectorLM warns too; here sft_args.length_handling deals with them in training
            logger.warning(
                "%s: %d rows are longer than %s=%d and neither truncate nor packing_type is set; "
                "sft_args.length_handling drops or cuts them in training",
                KEY,
                report.longer_than_max,
                LENGTH_KEY,
                max_seq_len,
            )


def _count_tokens(dataset: Dataset, report: PreprocessReport) -> None:
    import pyarrow.compute as pc

    table = dataset.data
    report.rows_out = len(dataset)
    report.tokens = pc.sum(pc.list_value_length(table.column("input_ids"))).as_py() or 0
    labels = pc.list_flatten(table.column("labels"))
    report.trained_tokens = pc.sum(pc.not_equal(labels, IGNORE_INDEX)).as_py() or 0


def _save_atomically(dataset: Dataset, target: Path, work: Path) -> None:
    """save_to_disk into `work` (beside target), then rename into place; an earlier result is replaced only then."""
    if target.exists() and not target.is_dir():
        raise UserError(f"{KEY}.save_path: {target} is a file, not a directory")
    written = work / "dataset"
    dataset.save_to_disk(str(written), max_shard_size="1GB")
    if target.exists():
        target.rename(work / "replaced")  # removed with `work`
    written.rename(target)
