"""`run_conf.special_tokens` / `run_conf.added_tokens` (model/tokenizer.add_run_tokens): the ids the new tokens get,
tokens kept whole in text, the pad token winning over data_conf.missing_pad_token_strategy, the eos a template ends
turns with, and a LoRA run that grows the vocabulary and saves tokens, embeddings and the resized base."""

from __future__ import annotations

import json

import pytest
from transformers import AutoTokenizer

from finetuning.cli import main
from finetuning.config.loading import ConfigError, validate_config
from finetuning.model.loading import ModelSetupError
from finetuning.train.run import prepare_tokenizer
from tests.conftest import sft_config, write_yaml

TOKENS = {"special_tokens": {"pad_token": "<pad>", "eos_token": "</s>"}, "added_tokens": ["<think>", "</think>"]}


def prepared(tmp_path, model_dir, template: str = "chat-ml", **run_conf):
    config = sft_config(tmp_path, model_dir, run_conf=run_conf, data_conf={"chat_template_name": template})
    return prepare_tokenizer(validate_config(config))


def test_new_tokens_get_the_next_ids_and_stay_whole_in_text(tmp_path, tiny_model_dir, tokenizer):
    size = len(tokenizer)  # the tiny tokenizer has no pad token; </s> is its eos already
    prepared_tokenizer, _, template_added = prepared(tmp_path, tiny_model_dir, **TOKENS)
    ids = prepared_tokenizer.convert_tokens_to_ids(["<pad>", "<think>", "</think>"])
    assert ids == [size, size + 1, size + 2]  # then the template's <|im_start|>, <|im_end|>
    assert template_added == ["<|im_start|>", "<|im_end|>"] and len(prepared_tokenizer) == size + 5
    assert (prepared_tokenizer.pad_token, prepared_tokenizer.pad_token_id) == ("<pad>", size)
    assert prepared_tokenizer.eos_token_id == tokenizer.eos_token_id
    text_ids = prepared_tokenizer("a<think>b</think>", add_special_tokens=False).input_ids
    assert text_ids[1] == size + 1 and text_ids[-1] == size + 2


def test_a_pad_token_of_ones_own_wins_over_the_strategy(tmp_path, tiny_model_dir):
    # the default strategy (bos-repurpose) would pad with <s>
    assert prepared(tmp_path, tiny_model_dir)[0].pad_token == "<s>"
    assert prepared(tmp_path, tiny_model_dir, special_tokens={"pad_token": "<pad>"})[0].pad_token == "<pad>"
    config = sft_config(
        tmp_path,
        tiny_model_dir,
        run_conf={"special_tokens": {"pad_token": "<pad>"}},
        data_conf={"missing_pad_token_strategy": "unk-convert-to-eos"},
    )
    with pytest.raises(ConfigError) as error:
        validate_config(config)
    assert error.value.problems[0].startswith("run_conf.special_tokens.pad_token: data_conf.missing_pad_token_strategy")


def test_an_eos_of_ones_own_ends_the_turns_of_templates_that_end_with_eos(tmp_path, tiny_model_dir):
    _, markers, _ = prepared(tmp_path, tiny_model_dir, "mistral-with-system", special_tokens={"eos_token": "<|end|>"})
    assert markers.assistant_end == "<|end|>"


def test_preference_methods_refuse_new_tokens_at_once(tmp_path, tiny_model_dir):
    cfg = validate_config(sft_config(tmp_path, tiny_model_dir, run_conf={"added_tokens": ["<think>"]}))
    with pytest.raises(ModelSetupError) as error:
        prepare_tokenizer(cfg.model_copy(update={"method": "dpo"}))
    assert str(error.value).startswith("run_conf.special_tokens / added_tokens: ['<think>'] are new to the tokenizer")
    existing = validate_config(sft_config(tmp_path, tiny_model_dir, run_conf={"special_tokens": {"pad_token": "</s>"}}))
    assert prepare_tokenizer(existing.model_copy(update={"method": "dpo"}))[0].pad_token == "</s>"  # nothing new


def test_empty_or_repeated_tokens_are_config_errors(tmp_path, tiny_model_dir):
    config = sft_config(
        tmp_path, tiny_model_dir, run_conf={"added_tokens": ["<a>", "<a>"], "special_tokens": {"eos_token": ""}}
    )
    with pytest.raises(ConfigError) as error:
        validate_config(config)
    assert error.value.problems == [
        "run_conf.special_tokens.eos_token: must be a non-empty string (the token's text)",
        "run_conf.added_tokens: lists ['<a>'] more than once",
    ]


def test_a_lora_run_grows_the_vocabulary_and_saves_the_tokens(tmp_path, tiny_model_dir, tokenizer):
    lora = {"peft_type": "LORA", "peft_kwargs": {"r": 4, "lora_alpha": 8, "target_modules": ["q_proj", "v_proj"]}}
    config = sft_config(tmp_path, tiny_model_dir, peft_conf=lora, run_conf=TOKENS, training_args={"max_steps": 3})
    assert main(["sft", str(write_yaml(tmp_path / "c.yaml", config))]) == 0
    final, new_base = tmp_path / "out" / "checkpoint-final", tmp_path / "out" / "checkpoint-new-basemodel"
    rows = len(tokenizer) + 5  # <pad>, <think>, </think> and chat-ml's two
    for directory in (final, new_base):
        saved = AutoTokenizer.from_pretrained(directory)
        assert saved.convert_tokens_to_ids(["<pad>", "<think>", "</think>"]) == [rows - 5, rows - 4, rows - 3]
        assert saved.pad_token == "<pad>" and len(saved) == rows
    assert json.loads((new_base / "config.json").read_text(encoding="utf-8"))["vocab_size"] == rows
    adapter = json.loads((final / "adapter_config.json").read_text(encoding="utf-8"))
    assert {"embed_tokens", "lm_head"} <= set(adapter["modules_to_save"])  # the new rows are trained and saved
