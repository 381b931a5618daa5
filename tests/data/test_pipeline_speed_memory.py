"""The tokenize step's batched form (one tokenizer call per batch, one walk per row for the labels), worker processes
that give the same data, and the parsed rows that do not outlive the read (issue 13, items 2 and 7)."""

from __future__ import annotations

from pathlib import Path

import pytest

from finetuning.config.loading import load_any_config
from finetuning.data import readers
from finetuning.data.inputs import ROWS_PER_WORKER, forked_workers_share_memory, map_workers
from finetuning.data.sft import build_sft_datasets
from finetuning.data.templates import get_template, render
from finetuning.data.tokenize import IGNORE_INDEX, assistant_spans, tokenize_batch
from finetuning.model.tokenizer import setup_tokenizer
from finetuning.train.run import prepare_tokenizer
from tests.conftest import CONVERSATION, FACTS, sft_config, write_jsonl, write_yaml
from tests.data.test_templates import data_conf

ONE_TURN = [{"role": "user", "content": "Capital of Tusello?"}, {"role": "assistant", "content": "Yorren."}]
NO_ANSWER = [{"role": "user", "content": "Hello?"}]


def labels_by_definition(messages: list[dict], tokenizer, markers) -> tuple[list[int], list[int]]:
    """(ids, labels) by the rule itself: a token is trained when its first character lies in an assistant span."""
    text = render(messages, tokenizer)
    encoding = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    spans = assistant_spans(text, markers)
    labels = [
        token if any(start <= offset[0] < end for start, end in spans) else IGNORE_INDEX
        for token, offset in zip(encoding["input_ids"], encoding["offset_mapping"], strict=True)
    ]
    return encoding["input_ids"], labels


@pytest.mark.parametrize("name", ["chat-ml", "mistral-with-system", "keep-original"])
def test_a_batch_is_labelled_as_each_conversation_alone(name, tokenizer):
    markers, _ = setup_tokenizer(tokenizer, get_template(name), data_conf(name))
    conversations = [CONVERSATION, ONE_TURN, NO_ANSWER, CONVERSATION]
    batch = tokenize_batch({"messages": conversations}, tokenizer, markers)
    for row, messages in enumerate(conversations):
        ids, labels = labels_by_definition(messages, tokenizer, markers)
        assert batch["input_ids"][row] == ids
        assert batch["labels"][row] == labels
        assert batch["length"][row] == len(ids)
        assert batch["assistant_turns"][row] == len(assistant_spans(render(messages, tokenizer), markers))
    assert batch["assistant_turns"][:2] == [2, 1]


def build(tmp_path: Path, model_dir: Path, workers: int | None, cache: str, data: Path = FACTS):
    config = sft_config(tmp_path, model_dir, data, data_conf={"prepared_path": str(tmp_path / cache)})
    cfg = load_any_config(write_yaml(tmp_path / f"{cache}.yaml", config))
    tokenizer, markers, _ = prepare_tokenizer(cfg)
    return build_sft_datasets(cfg.data_conf, cfg.sft_args, tokenizer, markers, workers)


def test_workers_only_for_rows_enough_to_pay_for_their_start():
    from datasets import Dataset

    rows = Dataset.from_dict({"n": list(range(2 * ROWS_PER_WORKER + 1))})
    assert map_workers(8, rows) == 2  # one per ROWS_PER_WORKER rows at most
    assert map_workers(2, rows.select(range(ROWS_PER_WORKER))) is None  # a small file: no worker start-up cost
    assert map_workers(None, rows) is None and map_workers(1, rows) is None


def test_two_preprocess_workers_give_the_same_data(tmp_path, tiny_model_dir):
    rows = [
        {"messages": [{"role": "user", "content": f"Capital of land {n}?"}, {"role": "assistant", "content": f"C{n}."}]}
        for n in range(2 * ROWS_PER_WORKER)
    ]
    data = write_jsonl(tmp_path / "many.jsonl", rows)
    one, _, report_one = build(tmp_path, tiny_model_dir, None, "one", data)
    two, _, report_two = build(tmp_path, tiny_model_dir, 2, "two", data)
    assert one["input_ids"] == two["input_ids"] and one["labels"] == two["labels"]
    assert report_one == report_two


def test_parsed_rows_do_not_outlive_the_read_built_or_cached(tmp_path, tiny_model_dir):
    """The per-run read memo holds every row as Python objects (~3x the file's size): once the rows are Arrow
    tables (built), or the tokenized data comes from the cache, they are dropped instead of staying to the end."""
    build(tmp_path, tiny_model_dir, None, "cache")
    assert readers._READ_FILES == {}
    readers.read_file(str(FACTS))  # as the pre-flight checks do on a repeat run
    assert readers._READ_FILES
    build(tmp_path, tiny_model_dir, None, "cache")  # a cache hit
    assert readers._READ_FILES == {}


def test_the_collector_is_frozen_only_while_workers_fork():
    import gc

    with forked_workers_share_memory(None):
        assert gc.get_freeze_count() == 0  # no workers: nothing changes
    with forked_workers_share_memory(2):
        assert gc.get_freeze_count() > 0  # the parent's objects: out of the workers' collections
    assert gc.get_freeze_count() == 0
