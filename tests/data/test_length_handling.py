"""`sft_args.length_handling`: filter drops too-long examples, truncate keeps their first max_seq_length tokens."""

from __future__ import annotations

import json
import logging
import math

import pytest

from finetuning.cli import main
from finetuning.config import load_any_config
from finetuning.config.data import ChatTrainValidConfig
from finetuning.config.sft import SFTArguments
from finetuning.data.sft import build_sft_datasets
from finetuning.data.templates import get_template
from finetuning.data.tokenize import IGNORE_INDEX
from finetuning.model.tokenizer import setup_tokenizer
from finetuning.train.resume_checks import recipe_data_fingerprint
from tests.conftest import FACTS, sft_config, write_yaml

LIMIT = 30  # the facts' conversations are 25-48 tokens here: about half are longer


def chat_ml_data() -> ChatTrainValidConfig:
    return ChatTrainValidConfig(
        training_data={"type": "CONCATENATION", "datasets": [{"path": str(FACTS)}]},
        validation_data={"type": "NONE"},
        chat_template_name="chat-ml",
    )


def build(tokenizer, **sft_args):
    """(train, report) tokenised completions-only with chat-ml, as the recipe does."""
    markers, _ = setup_tokenizer(tokenizer, get_template("chat-ml"), chat_ml_data())
    train, _, report = build_sft_datasets(chat_ml_data(), SFTArguments(**sft_args), tokenizer, markers)
    return train, report


def test_truncate_keeps_the_first_tokens_and_labels_token_by_token(tokenizer, caplog):
    full, _ = build(tokenizer, max_seq_length=4096)
    with caplog.at_level(logging.WARNING):
        cut, report = build(tokenizer, max_seq_length=LIMIT, length_handling="truncate")
    assert len(cut) == len(full)  # nothing dropped, same order
    longer = 0
    for whole, truncated in zip(full, cut, strict=True):
        assert truncated["input_ids"] == whole["input_ids"][:LIMIT]
        assert truncated["labels"] == whole["labels"][:LIMIT]
        assert truncated["length"] == min(whole["length"], LIMIT) == len(truncated["input_ids"])
        longer += whole["length"] > LIMIT
    assert 0 < longer < len(full)  # the limit really cuts some examples and leaves others whole
    assert report.truncated == {"training": longer}
    assert report.dropped_too_long == {}
    assert report.train_examples == len(full)
    assert report.train_tokens == sum(min(example["length"], LIMIT) for example in full)
    kept_labels = sum(label != IGNORE_INDEX for example in cut for label in example["labels"])
    assert report.trained_tokens == kept_labels
    assert f"training data: truncated {longer} of {len(full)} examples longer than sft_args.max_seq_length=30" in (
        caplog.text
    )


def test_filter_is_the_default_and_drops_what_truncate_would_cut(tokenizer):
    full, _ = build(tokenizer, max_seq_length=4096)
    kept, report = build(tokenizer, max_seq_length=LIMIT)
    longer = sum(example["length"] > LIMIT for example in full)
    assert SFTArguments().length_handling == "filter"
    assert report.dropped_too_long == {"training": longer} and report.truncated == {}
    assert len(kept) == len(full) - longer


def test_length_handling_changes_the_data_fingerprint(tmp_path, tiny_model_dir):
    """A checkpoint of filtered data is not resumed onto truncated data (other examples at each position)."""

    def fingerprint(handling: str) -> str:
        config = sft_config(tmp_path, tiny_model_dir, sft_args={"length_handling": handling})
        return recipe_data_fingerprint(load_any_config(write_yaml(tmp_path / f"{handling}.yaml", config)))

    assert fingerprint("filter") != fingerprint("truncate")


def test_unknown_length_handling_is_a_config_error(tmp_path, tiny_model_dir, capsys):
    config = sft_config(tmp_path, tiny_model_dir, sft_args={"length_handling": "raise"})
    assert main(["validate", str(write_yaml(tmp_path / "c.yaml", config))]) == 2
    assert "sft_args.length_handling" in capsys.readouterr().err


@pytest.mark.slow
def test_sft_with_truncate_and_a_tiny_max_seq_length_trains(tmp_path, tiny_model_dir, capsys):
    """The Silogen helm chart's speed-and-max-batch-test override: `length_handling: truncate`."""
    config = sft_config(
        tmp_path,
        tiny_model_dir,
        # every token trained: with 16 tokens left, most assistant replies are cut away entirely
        sft_args={"max_seq_length": 16, "length_handling": "truncate", "train_on_completions_only": False},
        training_args={"max_steps": 3},
    )
    path = write_yaml(tmp_path / "c.yaml", config)
    assert main(["validate", str(path)]) == 0
    assert "truncated as longer than sft_args.max_seq_length=16: training: " in capsys.readouterr().out
    assert main(["sft", str(path)]) == 0
    summary = (tmp_path / "out" / "summary.md").read_text()
    assert "| dropped as too long | 0 |" in summary
    assert "| truncated to max length | training: " in summary
    assert "| training examples | 100 |" in summary  # every example kept
    losses = [
        json.loads(line)["loss"]
        for line in (tmp_path / "out" / "metrics.jsonl").read_text().splitlines()
        if '"loss"' in line
    ]
    assert len(losses) == 3 and all(math.isfinite(loss) for loss in losses)
