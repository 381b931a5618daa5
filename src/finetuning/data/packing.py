"""Sample packing: many tokenized examples per row, so that short chat examples stop wasting compute on padding.

Two strategies (`sft_args.packing`): best-fit-decreasing over whole examples (TRL's `pack_dataset`), and chunking of
the token stream into fixed windows (VectorLM's `full`, or with `per_example` its `partial`). Every packed row keeps
`seq_lengths`, the lengths of the document pieces it holds, from which the padding-free collator restarts the
position ids at each document (data/collator.py). Which attention keeps the documents apart is checked with the
config (config/sft.py), a model with linear-attention layers before it loads (`linear_attention_problems`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # datasets loads when data is packed, not for the checks
    from datasets import Dataset

COLUMNS = ["input_ids", "labels"]
# Bins (bfd) and token streams (chunk) form inside one map batch: a large one packs tight, and costs only a few
# bytes per token of Arrow memory.
PACK_BATCH_ROWS = 100_000


def windows(total: int, size: int, overlap: int = 0) -> list[tuple[int, int]]:
    """(start, end) of the windows of at most `size` tokens that cover `total` tokens, consecutive windows sharing
    `overlap` tokens (stride size - overlap).

    As VectorLM's `range(0, total, stride)`, except that a window wholly inside the previous one (the tail that
    the previous window already reached) is not emitted: it would only train the same tokens again.
    """
    if size <= 0 or not 0 <= overlap < size:
        raise ValueError(f"windows need 0 <= overlap < size, got size={size}, overlap={overlap}")
    stride = size - overlap
    spans: list[tuple[int, int]] = []
    start = 0
    while start < total:
        end = min(start + size, total)
        spans.append((start, end))
        if end == total:
            break
        start += stride
    return spans


def pack(dataset: Dataset, max_length: int, packing_conf, num_proc: int | None = None) -> Dataset:
    """Rows of at most `max_length` tokens with columns input_ids, labels (packed with the ids, so completion masks
    survive token by token), seq_lengths (the document pieces of the row, in order) and length (the row's tokens)."""
    from datasets import Features, List, Value

    columns = dataset.select_columns(COLUMNS)
    if packing_conf.strategy == "bfd":
        from trl import pack_dataset

        packed = pack_dataset(columns, max_length, "bfd", map_kwargs={"batch_size": PACK_BATCH_ROWS})
        packed = packed.with_format(None)
    else:
        ids = List(Value("int32"))
        packed = columns.map(
            _chunk_batch,
            batched=True,
            batch_size=PACK_BATCH_ROWS,
            num_proc=num_proc,
            remove_columns=COLUMNS,
            fn_kwargs={"size": max_length, "overlap": packing_conf.overlap, "per_example": packing_conf.per_example},
            features=Features({"input_ids": ids, "labels": ids, "seq_lengths": ids}),
            desc="packing",
        )
    features = packed.features.copy()
    features["length"] = Value("int32")
    packed = packed.with_format("arrow").map(_with_row_lengths, batched=True, features=features, desc="row lengths")
    return packed.with_format(None)


def _with_row_lengths(table):
    """The `length` column (tokens of each packed row), with Arrow compute."""
    import pyarrow as pa
    import pyarrow.compute as pc

    return table.append_column("length", pc.list_value_length(table["input_ids"]).cast(pa.int32()))


def _chunk_batch(batch: dict, size: int, overlap: int, per_example: bool) -> dict:
    """The windows of a batch's token stream (or of each example alone), labels cut where the ids are; each window's
    seq_lengths are the pieces of the documents it overlaps."""
    out: dict[str, list] = {"input_ids": [], "labels": [], "seq_lengths": []}
    if per_example:
        for ids, labels in zip(batch["input_ids"], batch["labels"], strict=True):
            for start, end in windows(len(ids), size, overlap):
                out["input_ids"].append(ids[start:end])
                out["labels"].append(labels[start:end])
                out["seq_lengths"].append([end - start])
        return out
    ids = [token for row in batch["input_ids"] for token in row]
    labels = [label for row in batch["labels"] for label in row]
    boundaries = _document_starts([len(row) for row in batch["input_ids"]])
    for start, end in windows(len(ids), size, overlap):
        out["input_ids"].append(ids[start:end])
        out["labels"].append(labels[start:end])
        out["seq_lengths"].append(_pieces(boundaries, start, end))
    return out


def _document_starts(lengths: list[int]) -> list[int]:
    """Where each document starts in the concatenated stream, and where the stream ends (empty ones left out)."""
    starts, position = [], 0
    for length in lengths:
        if length:
            starts.append(position)
        position += length
    return [*starts, position]


def _pieces(boundaries: list[int], start: int, end: int) -> list[int]:
    """Lengths of the document pieces inside [start, end) of the stream whose document starts are `boundaries`."""
    import bisect

    cuts = [start, *(b for b in boundaries[bisect.bisect_right(boundaries, start) :] if b < end), end]
    return [b - a for a, b in zip(cuts, cuts[1:], strict=False)]


def packing_efficiency(rows: int, tokens: int, max_length: int) -> float:
    """Real tokens / token slots of the packed rows (rows × max_length): how full the rows are."""
    return tokens / (rows * max_length) if rows else 0.0


def linear_attention_problems(cfg, model_dir: Path | None) -> list[str]:
    """Packing with separate_documents on a model with linear-attention layers (Qwen3-Next's GatedDeltaNet...): their
    recurrent state would carry one packed document into the next without their kernels' sequence index, so it is
    refused; found in the model's config.json (`layer_types`), before the model loads. The attention implementation
    itself is checked with the config (config/sft.py, `packing_attention_problem`)."""
    packing = cfg.sft_args.packing if cfg.method == "sft" else False
    if not packing or not packing.separate_documents or model_dir is None:
        return []
    layer_types = _model_config(model_dir).get("layer_types") or []
    linear = sorted({str(kind) for kind in layer_types if "linear" in str(kind)})
    if not linear:
        return []
    return [
        f"sft_args.packing: the model {cfg.run_conf.model} has linear-attention layers ({', '.join(linear)}), which "
        "would mix packed documents; train it without packing (sft_args.packing: false)"
    ]


def _model_config(model_dir: Path) -> dict:
    """The model's config.json, text_config merged in (multimodal wrappers); {} when unreadable (loading says why)."""
    try:
        config = json.loads((model_dir / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    if not isinstance(config, dict):
        return {}
    text_config = config.get("text_config")
    return {**config, **text_config} if isinstance(text_config, dict) else config
