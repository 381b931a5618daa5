"""Turn a conversation into `input_ids` + `labels`, with completions-only masking from the template's markers."""

from __future__ import annotations

from .templates import Markers, render

IGNORE_INDEX = -100


def assistant_spans(text: str, markers: Markers) -> list[tuple[int, int]]:
    """Character spans of each assistant turn: from after its start marker to the end of its end marker (inclusive).

    The end marker is trained on, so the model learns to stop; a turn with no end marker runs to the end of text.
    """
    spans, position = [], 0
    while (found := text.find(markers.assistant_start, position)) != -1:
        start = found + len(markers.assistant_start)
        end_at = text.find(markers.assistant_end, start)
        end = len(text) if end_at == -1 else end_at + len(markers.assistant_end)
        spans.append((start, end))
        position = end
    return spans


def tokenize_conversation(messages: list[dict], tokenizer, markers: Markers | None) -> dict:
    """Tokenise one rendered conversation; with `markers` (completions-only) only assistant tokens get labels."""
    return {
        key: values[0] for key, values in tokenize_rendered([render(messages, tokenizer)], tokenizer, markers).items()
    }


def tokenize_rendered(texts: list[str], tokenizer, markers: Markers | None) -> dict[str, list]:
    """Tokenise rendered conversations in one tokenizer call (the Rust tokenizer encodes the batch, in parallel
    where it may; one call per row spent more time in Python than in tokenizing), then label each row.

    Special tokens are not added by the tokenizer call: the template already wrote bos (and every other marker) into
    the text, exactly as `apply_chat_template` will at inference.
    """
    encodings = tokenizer(texts, add_special_tokens=False, return_offsets_mapping=markers is not None)
    out: dict[str, list] = {"input_ids": encodings["input_ids"], "labels": [], "length": [], "assistant_turns": []}
    for row, (text, input_ids) in enumerate(zip(texts, encodings["input_ids"], strict=True)):
        if markers is None:
            labels, turns = list(input_ids), 0
        else:
            spans = assistant_spans(text, markers)
            labels, turns = completion_labels(input_ids, encodings["offset_mapping"][row], spans), len(spans)
        out["labels"].append(labels)
        out["length"].append(len(input_ids))
        out["assistant_turns"].append(turns)
    return out


def completion_labels(input_ids: list[int], offsets: list[tuple[int, int]], spans: list[tuple[int, int]]) -> list:
    """A token is trained when it starts inside an assistant span (markers never share a token with content, since
    special tokens are atomic and the byte-level pre-tokenizer splits at the marker punctuation). Tokens and spans
    are both in text order, so one walk over both labels the row (a test of every span per token was quadratic)."""
    labels, span, ends = [], 0, len(spans)
    for token, (start, _) in zip(input_ids, offsets, strict=True):
        while span < ends and start >= spans[span][1]:
            span += 1
        labels.append(token if span < ends and start >= spans[span][0] else IGNORE_INDEX)
    return labels


def tokenize_batch(batch: dict, tokenizer, markers: Markers | None) -> dict:
    """`datasets.map(batched=True)` adapter around `tokenize_rendered`; raw text rows (format `text`) are
    tokenised without a template (data/formats.py)."""
    if "text" in batch:
        from .formats import tokenize_texts

        return tokenize_texts(batch["text"], tokenizer)
    return tokenize_rendered([render(messages, tokenizer) for messages in batch["messages"]], tokenizer, markers)
