"""Each named template renders exactly the expected text, and its markers are the ones training and inference use."""

from __future__ import annotations

import pytest

from finetuning.config.data import ChatTrainValidConfig
from finetuning.data.templates import TemplateError, get_template, render, resolve_markers
from finetuning.model.tokenizer import setup_tokenizer
from tests.conftest import CONVERSATION

EXPECTED = {
    "mistral-with-system": (
        "<s><<SYS>>\nBe brief.\n<</SYS>>\n[INST] Capital of Tusello? [/INST]Yorren.</s> "
        "[INST] And its river? [/INST]The Vasren.</s> "
    ),
    "chat-ml": (
        "<s><|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nCapital of Tusello?<|im_end|>\n"
        "<|im_start|>assistant\nYorren.<|im_end|>\n<|im_start|>user\nAnd its river?<|im_end|>\n"
        "<|im_start|>assistant\nThe Vasren.<|im_end|>\n"
    ),
    "poro": (
        "<s><|system|>\nBe brief.</s><|user|>\nCapital of Tusello?</s><|assistant|>\nYorren.</s>"
        "<|user|>\nAnd its river?</s><|assistant|>\nThe Vasren.</s>"
    ),
    "simplified-llama31": (
        "<s><|start_header_id|>system<|end_header_id|>\n\nBe brief.<|eot_id|>"
        "<|start_header_id|>user<|end_header_id|>\n\nCapital of Tusello?<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\nYorren.<|eot_id|>"
        "<|start_header_id|>user<|end_header_id|>\n\nAnd its river?<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\nThe Vasren.<|eot_id|>"
    ),
    # the tiny tokenizer's own template (see finetuning.tools.tiny_model)
    "keep-original": (
        "<s>### system:\nBe brief.</s>\n### user:\nCapital of Tusello?</s>\n### assistant:\nYorren.</s>\n"
        "### user:\nAnd its river?</s>\n### assistant:\nThe Vasren.</s>\n"
    ),
}

MARKERS = {
    "mistral-with-system": ("[/INST]", "</s>"),
    "chat-ml": ("<|im_start|>assistant\n", "<|im_end|>"),
    "poro": ("<|assistant|>\n", "</s>"),
    "simplified-llama31": ("<|start_header_id|>assistant<|end_header_id|>\n\n", "<|eot_id|>"),
    "keep-original": ("### assistant:\n", "</s>"),
}


def data_conf(template: str, **extra) -> ChatTrainValidConfig:
    return ChatTrainValidConfig(
        training_data={"type": "CONCATENATION", "datasets": [{"path": "x.jsonl"}]},
        validation_data={"type": "NONE"},
        chat_template_name=template,
        **extra,
    )


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_template_renders_exactly(name, tokenizer):
    markers, _ = setup_tokenizer(tokenizer, get_template(name), data_conf(name))
    assert render(CONVERSATION, tokenizer) == EXPECTED[name]
    assert (markers.assistant_start, markers.assistant_end) == MARKERS[name]


@pytest.mark.parametrize("name", ["chat-ml", "poro", "simplified-llama31"])
def test_template_tokens_are_added_as_atomic_special_tokens(name, tokenizer):
    before = len(tokenizer)
    _, added = setup_tokenizer(tokenizer, get_template(name), data_conf(name))
    assert added == list(get_template(name).added_special_tokens)
    assert len(tokenizer) == before + len(added)
    for token in added:
        assert tokenizer(token, add_special_tokens=False)["input_ids"] == [tokenizer.convert_tokens_to_ids(token)]


def test_existing_extra_special_tokens_are_kept(tokenizer):
    tokenizer.add_special_tokens({"additional_special_tokens": ["<|tool|>"]})
    setup_tokenizer(tokenizer, get_template("chat-ml"), data_conf("chat-ml"))
    assert {"<|tool|>", "<|im_start|>", "<|im_end|>"} <= set(tokenizer.all_special_tokens)


def test_generation_prompt_matches_training_prefix(tokenizer):
    """Inference renders the prompt exactly as the training text began (the classic template mismatch)."""
    setup_tokenizer(tokenizer, get_template("chat-ml"), data_conf("chat-ml"))
    prompt = render(CONVERSATION[:2], tokenizer, add_generation_prompt=True)
    assert EXPECTED["chat-ml"].startswith(prompt)
    assert prompt.endswith("<|im_start|>assistant\n")


def test_keep_original_without_template_is_a_clear_error(tokenizer):
    tokenizer.chat_template = None
    with pytest.raises(TemplateError, match="has no chat template"):
        resolve_markers(get_template("keep-original"), tokenizer)


def test_unknown_template_name():
    with pytest.raises(TemplateError, match="known: mistral-with-system"):
        get_template("chatml")
