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
    """Tokenise one rendered conversation; with `markers` (completions-only) only assistant tokens get labels.

    Special tokens are not added by the tokenizer call: the template already wrote bos (and every other marker) into
    the text, exactly as `apply_chat_template` will at inference.
    """
    text = render(messages, tokenizer)
    encoding = tokenizer(text, add_special_tokens=False, return_offsets_mapping=markers is not None)
    input_ids = encoding["input_ids"]
    if markers is None:
        labels = list(input_ids)
        turns = 0
    else:
        spans = assistant_spans(text, markers)
        turns = len(spans)
        # A token is trained when it starts inside an assistant span (markers never share a token with content,
        # since special tokens are atomic and the byte-level pre-tokenizer splits at the marker punctuation).
        labels = [
            token if any(start <= offset[0] < end for start, end in spans) else IGNORE_INDEX
            for token, offset in zip(input_ids, encoding["offset_mapping"], strict=True)
        ]
    return {"input_ids": input_ids, "labels": labels, "length": len(input_ids), "assistant_turns": turns}


def tokenize_batch(batch: dict, tokenizer, markers: Markers | None) -> dict:
    """`datasets.map(batched=True)` adapter around `tokenize_conversation`."""
    out: dict[str, list] = {"input_ids": [], "labels": [], "length": [], "assistant_turns": []}
    for messages in batch["messages"]:
        for key, value in tokenize_conversation(messages, tokenizer, markers).items():
            out[key].append(value)
    return out
