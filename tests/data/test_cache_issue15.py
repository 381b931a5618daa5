"""The tokenized-data cache and the checks' kept outcome under issue 15's data keys: changing any of columns, roles,
default_system_message, deduplicate, chat_template_jinja or length_handling is a miss; the number of preprocessing
workers changes no example, so it is a hit."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import pytest

from finetuning.data import readers
from finetuning.data.cache import cache_location
from finetuning.data.sft import sft_data_problems
from tests.conftest import FACTS, deep_update, write_jsonl
from tests.data.test_cache import BUILT, REUSED, build, cached_config, messages
from tests.data.test_chat_template_jinja import CUSTOM
from tests.data.test_columns_roles import data_conf


def _entry(config: dict, **keys) -> dict:
    """The config with its first training dataset entry given `keys`."""
    config = deep_update(config, {})
    config["data_conf"]["training_data"]["datasets"][0].update(keys)
    return config


CHANGES = {
    "columns": lambda config: _entry(config, columns={"role": "role"}),
    "roles": lambda config: _entry(config, roles={"system": ["system"], "user": ["user"], "assistant": ["assistant"]}),
    "default_system_message": lambda config: deep_update(
        config, {"data_conf": {"default_system_message": "Be brief."}}
    ),
    "deduplicate": lambda config: deep_update(config, {"data_conf": {"deduplicate": True}}),
    "chat_template_jinja": lambda config: deep_update(
        config, {"data_conf": {"chat_template_name": "keep-original", "chat_template_jinja": CUSTOM}}
    ),
    "length_handling error": lambda config: deep_update(config, {"sft_args": {"length_handling": "error"}}),
}


@pytest.mark.parametrize("change", CHANGES)
def test_each_changed_key_is_a_miss(tmp_path, tiny_model_dir, caplog, change):
    caplog.set_level(logging.INFO, logger="finetuning.data.cache")
    model = shutil.copytree(tiny_model_dir, tmp_path / "model")
    config = cached_config(tmp_path, model, Path(shutil.copy(FACTS, tmp_path / "facts.jsonl")))
    first = cache_location(build(tmp_path, config)[0])
    caplog.clear()
    second = cache_location(build(tmp_path, CHANGES[change](config))[0])
    assert second != first
    assert [m for m in messages(caplog) if m.startswith("data: ")] == [f"data: {BUILT} {second}"]


def test_the_number_of_workers_is_a_hit(tmp_path, tiny_model_dir, caplog):
    caplog.set_level(logging.INFO, logger="finetuning.data.cache")
    config = cached_config(tmp_path, tiny_model_dir)
    first = cache_location(build(tmp_path, config)[0])
    caplog.clear()
    again = build(tmp_path, deep_update(config, {"data_conf": {"num_preprocess_workers": 4}}))[0]
    assert messages(caplog) == [f"data: {REUSED} {first}"] and cache_location(again) == first


def test_a_changed_preference_column_is_a_miss(tmp_path, tiny_model_dir, caplog):
    caplog.set_level(logging.INFO, logger="finetuning.data.cache")
    rows = [
        {"question": "Capital?", "chosen": "Yorren.", "rejected": "Quellton.", "sys": "Be brief."},
        {"question": "River?", "chosen": "Vasren.", "rejected": "None."},
    ]
    path = write_jsonl(tmp_path / "pairs.jsonl", rows)
    config = cached_config(tmp_path, tiny_model_dir, path, method="dpo")
    del config["sft_args"]
    config = _entry(config, format="prompt_chosen_rejected", columns={"prompt": "question"})
    first = build(tmp_path, config)[0]
    caplog.clear()
    with_system = build(tmp_path, _entry(config, columns={"prompt": "question", "system": "sys"}))[0]
    assert cache_location(with_system) != cache_location(first)
    assert with_system["prompt_ids"][0] != first["prompt_ids"][0]  # the system message is in the prompt now
    assert [m for m in messages(caplog) if m.startswith("data: ")] == [f"data: {BUILT} {cache_location(with_system)}"]


def test_the_kept_outcome_of_the_checks_follows_the_roles(tmp_path):
    """The checks' outcome is kept per file bytes and conversion: other roles check the same bytes again."""
    path = write_jsonl(
        tmp_path / "s.jsonl", [{"conversations": [{"from": "human", "value": "a"}, {"from": "gpt", "value": "b"}]}]
    )
    assert sft_data_problems(data_conf(path, {"format": "sharegpt"}), require_assistant=True) == []
    readers.forget_read_files()
    narrow = data_conf(path, {"format": "sharegpt", "roles": {"user": ["human"], "assistant": ["bot"]}})
    [problem] = sft_data_problems(narrow, require_assistant=True)
    assert problem.startswith(f"{path}:1: conversations[1].from is 'gpt'")
