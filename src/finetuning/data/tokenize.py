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
    """`datasets.map(batched=True)` adapter: raw text rows (format `text`) and prompt/completion text rows (alpaca,
    oasst, string prompt_completion) are tokenised without a template (data/formats.py), rows of format `tokenized`
    pass through as they are (labels default to the ids), conversations through
    `tokenize_rendered`. A prompt_completion file may mix text rows and conversations, so each row goes its way and
    the results are put back in row order."""
    from .formats import pass_tokenized, tokenize_prompt_completions, tokenize_texts

    if "text" in batch:
        return tokenize_texts(batch["text"], tokenizer)
    if "input_ids" in batch:  # format tokenized: nothing to tokenise (labels default to the ids)
        return pass_tokenized(batch["input_ids"], batch.get("labels") or [None] * len(batch["input_ids"]), tokenizer)
    prompts = batch.get("prompt_text") or [None] * len(next(iter(batch.values()), []))
    texts = [row for row, prompt in enumerate(prompts) if prompt is not None]
    chats = [row for row, prompt in enumerate(prompts) if prompt is None]
    parts = []
    if texts:
        pairs = ([prompts[row] for row in texts], [batch["completion_text"][row] for row in texts])
        parts.append((texts, tokenize_prompt_completions(*pairs, tokenizer, completions_only=markers is not None)))
    if chats:
        rendered = [render(batch["messages"][row], tokenizer) for row in chats]
        parts.append((chats, tokenize_rendered(rendered, tokenizer, markers)))
    return _in_row_order(parts, len(prompts))


def _in_row_order(parts: list[tuple[list[int], dict[str, list]]], rows: int) -> dict[str, list]:
    """Columns of several tokenised subsets of a batch (each with the batch's row numbers), merged in row order."""
    if len(parts) == 1:
        return parts[0][1]
    keys = ("input_ids", "labels", "length", "assistant_turns")
    out: dict[str, list] = {key: [None] * rows for key in keys}
    for indices, columns in parts:
        for key, values in columns.items():
            for row, value in zip(indices, values, strict=True):
                out[key][row] = value
    return out
