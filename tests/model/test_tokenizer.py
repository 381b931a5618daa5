"""Pad strategies, the unk-convert-to-eos collator, and the inference set-up written on every tokenizer save."""

from __future__ import annotations

import pytest
from transformers import AutoTokenizer

from finetuning.data.collator import build_collator
from finetuning.data.templates import TEMPLATES, TemplateError, get_template
from finetuning.data.tokenize import IGNORE_INDEX
from finetuning.model.tokenizer import apply_pad_strategy, setup_tokenizer
from tests.conftest import CONVERSATION
from tests.data.test_templates import data_conf


@pytest.mark.parametrize(
    ("strategy", "source"),
    [
        ("eos-repurpose", "eos_token"),
        ("bos-repurpose", "bos_token"),
        ("unk-repurpose", "unk_token"),
        ("unk-convert-to-eos", "unk_token"),
    ],
)
def test_pad_strategy_sets_the_pad_token(tokenizer, strategy, source):
    assert tokenizer.pad_token is None
    apply_pad_strategy(tokenizer, strategy)
    assert tokenizer.pad_token == getattr(tokenizer, source)


def test_existing_pad_token_is_kept_except_for_unk_convert(tokenizer):
    tokenizer.pad_token = tokenizer.eos_token
    apply_pad_strategy(tokenizer, "bos-repurpose")
    assert tokenizer.pad_token == tokenizer.eos_token
    with pytest.raises(TemplateError, match="needs a tokenizer without a pad token"):
        apply_pad_strategy(tokenizer, "unk-convert-to-eos")


@pytest.mark.parametrize("strategy", ["bos-repurpose", "unk-convert-to-eos"])
def test_collator_pads_and_masks(tokenizer, strategy):
    apply_pad_strategy(tokenizer, strategy)
    collator = build_collator(tokenizer, strategy)
    batch = collator(
        [{"input_ids": [10, 11, 12], "labels": [IGNORE_INDEX, 11, 12]}, {"input_ids": [20], "labels": [20]}]
    )
    expected_pad = tokenizer.eos_token_id if strategy == "unk-convert-to-eos" else tokenizer.bos_token_id
    assert batch["input_ids"].tolist() == [[10, 11, 12], [20, expected_pad, expected_pad]]
    assert batch["labels"].tolist() == [[IGNORE_INDEX, 11, 12], [20, IGNORE_INDEX, IGNORE_INDEX]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1], [1, 0, 0]]


def test_saved_tokenizer_is_set_up_for_inference(tokenizer, tmp_path):
    setup_tokenizer(tokenizer, get_template("chat-ml"), data_conf("chat-ml"))
    training_eos = tokenizer.eos_token
    tokenizer.save_pretrained(tmp_path)
    assert tokenizer.eos_token == training_eos == "</s>"  # restored in memory

    saved = AutoTokenizer.from_pretrained(tmp_path)
    assert saved.eos_token == "<|im_end|>"
    ids = saved("hello")["input_ids"]
    assert ids[-1] != saved.convert_tokens_to_ids("</s>")
    assert saved.chat_template == get_template("chat-ml").jinja
    assert saved.pad_token == saved.bos_token


@pytest.mark.parametrize("name", sorted(TEMPLATES))
def test_saved_tokenizer_and_template_agree_on_one_bos(tokenizer, tmp_path, name):
    """The common `tok(tok.apply_chat_template(msgs, tokenize=False))` gives the ids `apply_chat_template` gives,
    starting with exactly one bos (the template writes it, so the saved tokenizer does not add another)."""
    setup_tokenizer(tokenizer, get_template(name), data_conf(name))
    tokenizer.save_pretrained(tmp_path)
    saved = AutoTokenizer.from_pretrained(tmp_path)
    messages = [m for m in CONVERSATION if m["role"] != "system"]  # mistral-with-system: alternating turns

    via_text = saved(saved.apply_chat_template(messages, tokenize=False))["input_ids"]
    direct = saved.apply_chat_template(messages, tokenize=True, return_dict=True)["input_ids"]
    assert via_text == direct
    assert via_text[0] == saved.bos_token_id and via_text.count(saved.bos_token_id) == 1


def test_saved_tokenizer_adds_bos_when_the_template_does_not(tokenizer, tmp_path):
    tokenizer.chat_template = (  # the model's own template (keep-original), without bos
        "{% for m in messages %}{{ m['role'] + ': ' + m['content'] + eos_token }}{% endfor %}"
        "{% if add_generation_prompt %}{{ 'assistant: ' }}{% endif %}"
    )
    setup_tokenizer(tokenizer, get_template("keep-original"), data_conf("keep-original"))
    tokenizer.save_pretrained(tmp_path)
    saved = AutoTokenizer.from_pretrained(tmp_path)
    assert saved("hello")["input_ids"][0] == saved.bos_token_id
