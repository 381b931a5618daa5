"""Completions-only labels, checked token by token against independently tokenised pieces."""

from __future__ import annotations

import pytest

from finetuning.data.templates import get_template
from finetuning.data.tokenize import IGNORE_INDEX, tokenize_conversation
from finetuning.model.tokenizer import setup_tokenizer
from tests.conftest import CONVERSATION
from tests.data.test_templates import data_conf


def trained_runs(result) -> list[list[int]]:
    """Maximal runs of consecutive trained positions, as token ids."""
    runs, current = [], []
    for token, label in zip(result["input_ids"], result["labels"], strict=True):
        if label != IGNORE_INDEX:
            assert label == token  # a trained position predicts its own token (the model shifts)
            current.append(token)
        elif current:
            runs.append(current)
            current = []
    if current:
        runs.append(current)
    return runs


@pytest.mark.parametrize("name", ["mistral-with-system", "chat-ml", "poro", "simplified-llama31", "keep-original"])
def test_only_assistant_turns_and_their_end_marker_are_trained(name, tokenizer):
    markers, _ = setup_tokenizer(tokenizer, get_template(name), data_conf(name))
    result = tokenize_conversation(CONVERSATION, tokenizer, markers)
    expected_runs = [
        tokenizer(answer + markers.assistant_end, add_special_tokens=False)["input_ids"]
        for answer in ("Yorren.", "The Vasren.")
    ]
    assert trained_runs(result) == expected_runs
    assert result["assistant_turns"] == 2


def test_chat_ml_labels_token_by_token(tokenizer):
    markers, _ = setup_tokenizer(tokenizer, get_template("chat-ml"), data_conf("chat-ml"))
    messages = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Yo"}]
    result = tokenize_conversation(messages, tokenizer, markers)

    def ids(text):
        return tokenizer(text, add_special_tokens=False)["input_ids"]

    prompt = ids("<s><|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n")
    answer = ids("Yo<|im_end|>")
    tail = ids("\n")
    assert result["input_ids"] == prompt + answer + tail
    assert result["labels"] == [IGNORE_INDEX] * len(prompt) + answer + [IGNORE_INDEX] * len(tail)


def test_without_completions_only_every_token_is_trained(tokenizer):
    setup_tokenizer(tokenizer, get_template("chat-ml"), data_conf("chat-ml"))
    result = tokenize_conversation(CONVERSATION, tokenizer, None)
    assert result["labels"] == result["input_ids"]
    assert result["input_ids"][0] == tokenizer.bos_token_id
    assert result["length"] == len(result["input_ids"])
