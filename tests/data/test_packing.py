"""`sft_args.packing` on the data side: rows packed token by token (bfd and chunk), masks kept, the padding-free
collation of packed rows, the cache, and the config errors. The model-side exactness tests: tests/e2e/test_packing.py.
"""

from __future__ import annotations

import copy
from collections import Counter

import pytest
import torch

from finetuning.config import ConfigError, validate_config
from finetuning.config.data import ChatTrainValidConfig
from finetuning.config.sft import PackingConfig, SFTArguments
from finetuning.data.cache import cache_location
from finetuning.data.collator import PackedCollator, PackedRowsCollator, UnkToEosCollator, build_collator
from finetuning.data.packing import linear_attention_problems, pack, packing_efficiency, windows
from finetuning.data.sft import build_sft_datasets, tokenized_features
from finetuning.data.templates import get_template
from finetuning.data.tokenize import IGNORE_INDEX
from finetuning.model.tokenizer import apply_pad_strategy, setup_tokenizer
from tests.conftest import FACTS

# --- windows --------------------------------------------------------------------------------------------------------


def test_windows_cover_the_stream_sharing_overlap_tokens():
    assert windows(10, 4) == [(0, 4), (4, 8), (8, 10)]
    assert windows(8, 4) == [(0, 4), (4, 8)]
    assert windows(10, 6, 2) == [(0, 6), (4, 10)]  # VectorLM's range(0, 10, 4) also yields (8, 10): inside (4, 10)
    assert windows(9, 4, 1) == [(0, 4), (3, 7), (6, 9)]
    assert windows(3, 4, 3) == [(0, 3)]
    assert windows(0, 4) == []


@pytest.mark.parametrize(("size", "overlap"), [(4, 4), (4, 5), (0, 0), (4, -1)])
def test_windows_refuse_a_stride_below_one(size, overlap):
    with pytest.raises(ValueError, match="overlap < size"):
        windows(10, size, overlap)


# --- packing rows ---------------------------------------------------------------------------------------------------


def tokenized(rows: list[tuple[list[int], list[int]]]):
    """A dataset shaped like the SFT pipeline's output (input_ids, labels, length)."""
    from datasets import Dataset

    features = tokenized_features()
    del features["assistant_turns"]
    columns = {
        "input_ids": [ids for ids, _ in rows],
        "labels": [labels for _, labels in rows],
        "length": [len(ids) for ids, _ in rows],
    }
    return Dataset.from_dict(columns, features=features)


# labels: -100 marks a prompt token (completion-only), so a lost mask would show as a trained token
EXAMPLES = [
    ([1, 2, 3, 4, 5], [-100, -100, 3, 4, 5]),
    ([6, 7], [-100, 7]),
    ([8, 9, 10], [-100, 9, -100]),
    ([11], [11]),
]


def pieces(row: dict) -> list[tuple[list[int], list[int]]]:
    """A packed row cut back into its documents by seq_lengths."""
    out, start = [], 0
    for length in row["seq_lengths"]:
        out.append((row["input_ids"][start : start + length], row["labels"][start : start + length]))
        start += length
    assert start == row["length"] == len(row["input_ids"]) == len(row["labels"])
    return out


def as_key(example):
    return tuple(example[0]), tuple(example[1])


def test_bfd_packs_whole_examples_with_their_labels_token_by_token():
    packed = pack(tokenized(EXAMPLES), 5, PackingConfig())
    rows = packed.to_list()
    assert [row["input_ids"] for row in rows] == [[1, 2, 3, 4, 5], [8, 9, 10, 6, 7], [11]]  # best fit, decreasing
    assert all(row["length"] <= 5 for row in rows)
    documents = [piece for row in rows for piece in pieces(row)]
    assert Counter(map(as_key, documents)) == Counter(map(as_key, EXAMPLES))  # every example once, masks intact
    assert packing_efficiency(len(rows), 11, 5) == pytest.approx(11 / 15)


def test_chunk_cuts_the_stream_into_windows_sharing_overlap_tokens():
    packed = pack(tokenized(EXAMPLES), 5, PackingConfig(strategy="chunk", overlap=1)).to_list()
    assert [row["input_ids"] for row in packed] == [[1, 2, 3, 4, 5], [5, 6, 7, 8, 9], [9, 10, 11]]
    assert [row["labels"] for row in packed] == [[-100, -100, 3, 4, 5], [5, -100, 7, -100, 9], [9, -100, 11]]
    # the document pieces inside each window: where positions restart with separate_documents
    assert [row["seq_lengths"] for row in packed] == [[5], [1, 2, 2], [2, 1]]
    assert [row["length"] for row in packed] == [5, 5, 3]


def test_chunk_per_example_never_joins_two_examples():
    long = (list(range(20, 32)), [-100] * 3 + list(range(23, 32)))
    packed = pack(tokenized([long, *EXAMPLES[1:]]), 5, PackingConfig(strategy="chunk", per_example=True, overlap=2))
    rows = packed.to_list()
    assert [row["input_ids"] for row in rows] == [
        [20, 21, 22, 23, 24],
        [23, 24, 25, 26, 27],
        [26, 27, 28, 29, 30],
        [29, 30, 31],
        [6, 7],
        [8, 9, 10],
        [11],
    ]
    assert rows[0]["labels"] == [-100, -100, -100, 23, 24]
    assert rows[1]["labels"] == [23, 24, 25, 26, 27]
    assert all(row["seq_lengths"] == [row["length"]] for row in rows)


def facts_data() -> ChatTrainValidConfig:
    return ChatTrainValidConfig(
        training_data={"type": "CONCATENATION", "datasets": [{"path": str(FACTS)}]},
        validation_data={"type": "AUTO_SPLIT", "ratio": 0.2},
        chat_template_name="chat-ml",
    )


def build(tokenizer, **sft_args):
    markers, _ = setup_tokenizer(tokenizer, get_template("chat-ml"), facts_data())
    return build_sft_datasets(facts_data(), SFTArguments(**sft_args), tokenizer, markers)


def test_the_pipeline_packs_completion_masked_examples_and_reports_it(tokenizer):
    plain_train, plain_eval, plain_report = build(tokenizer, max_seq_length=128, train_on_completions_only=True)
    train, evaluation, report = build(tokenizer, max_seq_length=128, train_on_completions_only=True, packing=True)
    assert "seq_lengths" in train.column_names and "seq_lengths" not in plain_train.column_names  # not a stale entry
    # the packed rows hold exactly the unpacked examples, token by token, completion masks included
    documents = [piece for row in train.to_list() for piece in pieces(row)]
    originals = [(row["input_ids"], row["labels"]) for row in plain_train.to_list()]
    assert Counter(map(as_key, documents)) == Counter(map(as_key, originals))
    assert any(IGNORE_INDEX in labels for _, labels in documents)
    assert len(train) < len(plain_train) and max(train["length"]) <= 128
    assert report.packed_train_rows == len(train)
    assert report.packing_efficiency == pytest.approx(report.train_tokens / (len(train) * 128))
    assert report.train_tokens == plain_report.train_tokens and report.trained_tokens == plain_report.trained_tokens
    # validation packed the same way, from the validation examples only
    assert report.packed_eval_rows == len(evaluation) < len(plain_eval)
    eval_documents = [piece for row in evaluation.to_list() for piece in pieces(row)]
    assert Counter(map(as_key, eval_documents)) == Counter(
        as_key((row["input_ids"], row["labels"])) for row in plain_eval.to_list()
    )
    # the packed rows are what the cache keeps: a second build reads them back, the same
    again, _, again_report = build(tokenizer, max_seq_length=128, train_on_completions_only=True, packing=True)
    assert cache_location(again) == cache_location(train) and again.to_list() == train.to_list()
    assert again_report == report
    _, unpacked_eval, eval_report = build(tokenizer, max_seq_length=128, packing=True, eval_packing=False)
    assert "seq_lengths" not in unpacked_eval.column_names and eval_report.packed_eval_rows is None


# --- collation ------------------------------------------------------------------------------------------------------


def test_packed_collator_restarts_positions_ignores_first_labels_and_sends_no_mask(tokenizer):
    apply_pad_strategy(tokenizer, "eos-repurpose")
    rows = pack(tokenized(EXAMPLES), 5, PackingConfig()).to_list()
    collator = build_collator(tokenizer, "eos-repurpose", packing=PackingConfig())
    assert isinstance(collator, PackedCollator)
    batch = collator(rows[:2])
    assert "attention_mask" not in batch  # a mask would switch sdpa's and eager's document separation off
    assert batch["use_cache"] is False  # a KV cache would too (transformers skips the packed mask with one)
    assert batch["input_ids"].tolist() == [[1, 2, 3, 4, 5, 8, 9, 10, 6, 7]]
    assert batch["position_ids"].tolist() == [[0, 1, 2, 3, 4, 0, 1, 2, 0, 1]]
    # the first label of each document is never trained (it would be predicted from the previous document)
    assert batch["labels"].tolist() == [[-100, -100, 3, 4, 5, -100, 9, -100, -100, 7]]
    assert batch["cu_seq_lens_q"].tolist() == [0, 5, 8, 10]


def test_packed_rows_for_masked_attention_keep_rows_apart_with_the_same_guarantees(tokenizer):
    apply_pad_strategy(tokenizer, "eos-repurpose")
    rows = pack(tokenized(EXAMPLES), 5, PackingConfig()).to_list()
    for attention in ("sdpa", "eager", "flex_attention"):
        assert isinstance(build_collator(tokenizer, "eos-repurpose", PackingConfig(), attention), PackedRowsCollator)
    for attention in ("flash_attention_2", "kernels-community/flash-attn3", None):
        assert isinstance(build_collator(tokenizer, "eos-repurpose", PackingConfig(), attention), PackedCollator)
    batch = build_collator(tokenizer, "eos-repurpose", PackingConfig(), "sdpa")([rows[0], rows[2], rows[1]])
    assert set(batch) == {"input_ids", "labels", "position_ids", "use_cache"}  # no attention mask
    assert batch["use_cache"] is False
    pad = tokenizer.pad_token_id
    assert batch["input_ids"].tolist() == [[1, 2, 3, 4, 5], [11, pad, pad, pad, pad], [8, 9, 10, 6, 7]]
    # pads are one-token documents of their own (position 0): no real token attends to them
    assert batch["position_ids"].tolist() == [[0, 1, 2, 3, 4], [0, 0, 0, 0, 0], [0, 1, 2, 0, 1]]
    assert batch["labels"].tolist() == [[-100, -100, 3, 4, 5], [-100] * 5, [-100, 9, -100, -100, 7]]


def test_unk_to_eos_still_wraps_the_packed_collator(tokenizer):
    apply_pad_strategy(tokenizer, "unk-convert-to-eos")
    unk, eos = tokenizer.unk_token_id, tokenizer.eos_token_id
    collator = build_collator(tokenizer, "unk-convert-to-eos", packing=PackingConfig())
    assert isinstance(collator, UnkToEosCollator) and isinstance(collator.inner, PackedCollator)
    batch = collator([{"input_ids": [5, unk, 6], "labels": [5, 5, 6], "seq_lengths": [2, 1]}])
    assert batch["input_ids"].tolist() == [[5, eos, 6]] and batch["labels"].tolist() == [[-100, -100, -100]]
    assert "attention_mask" not in batch


def test_without_separate_documents_rows_collate_plainly_positions_run_on(tokenizer):
    apply_pad_strategy(tokenizer, "eos-repurpose")
    conf = PackingConfig(strategy="chunk", separate_documents=False)
    rows = pack(tokenized(EXAMPLES), 5, conf).to_list()
    collator = build_collator(tokenizer, "eos-repurpose", packing=conf)
    assert not isinstance(collator, PackedCollator)
    batch = collator(rows[:2])
    assert "position_ids" not in batch  # the model counts 0..n-1 over the whole row: documents see each other
    assert batch["input_ids"].tolist() == [[1, 2, 3, 4, 5], [6, 7, 8, 9, 10]]
    assert batch["labels"].tolist() == [[-100, -100, 3, 4, 5], [-100, 7, -100, 9, -100]]  # as VectorLM's full
    assert batch["attention_mask"].tolist() == [[1] * 5, [1] * 5]
    assert torch.is_tensor(batch["input_ids"])


# --- config ---------------------------------------------------------------------------------------------------------

BASE = {
    "data_conf": {
        "training_data": {"type": "CONCATENATION", "datasets": [{"path": str(FACTS)}]},
        "validation_data": {"type": "NONE"},
    },
    "training_args": {},
    "batchsize_conf": {"total_train_batch_size": 8, "max_per_device_train_batch_size": 8},
    "peft_conf": {"peft_type": "NO_PEFT"},
    "run_conf": {"model": "some/model"},
}


def config_with(sft_args: dict, attn_implementation: str | None = None):
    data = copy.deepcopy(BASE)
    data["sft_args"] = sft_args
    if attn_implementation:
        data["run_conf"]["model_args"] = {"attn_implementation": attn_implementation}
    return validate_config(data)


def problems(sft_args: dict, attn_implementation: str | None = None) -> list[str]:
    with pytest.raises(ConfigError) as info:
        config_with(sft_args, attn_implementation)
    return info.value.problems


def test_packing_values():
    assert config_with({}).sft_args.packing is False
    assert config_with({"packing": True}).sft_args.packing == PackingConfig(strategy="bfd")
    chunk = config_with({"packing": {"strategy": "chunk", "overlap": 8, "per_example": True}}).sft_args.packing
    assert (chunk.strategy, chunk.overlap, chunk.per_example, chunk.separate_documents) == ("chunk", 8, True, True)
    assert config_with({"packing": True}).sft_args.eval_packing is True


@pytest.mark.parametrize(
    ("sft_args", "expected"),
    [
        ({"packing": {"overlap": 2}}, "sft_args.packing: overlap applies to strategy 'chunk' only"),
        ({"packing": {"per_example": True}}, "sft_args.packing: per_example applies to strategy 'chunk' only"),
        (
            {"max_seq_length": 16, "packing": {"strategy": "chunk", "overlap": 16}},
            "sft_args.packing: overlap 16 must be less than sft_args.max_seq_length (16)",
        ),
        ({"packing": {"strategy": "chunk", "overlap": -1}}, "sft_args.packing.overlap: must be greater than or equal"),
        ({"packing": {"strategy": "wrapped"}}, "sft_args.packing.strategy: must be 'bfd' or 'chunk'"),
        ({"packing": "yes"}, "sft_args.packing: must be true, false or a mapping"),
    ],
)
def test_packing_config_errors_name_the_key(sft_args, expected):
    found = problems(sft_args)
    assert len(found) == 1 and found[0].startswith(expected), found


def test_packing_needs_an_attention_that_separates_documents():
    (problem,) = problems({"packing": True}, "paged|sdpa")
    assert problem.startswith("run_conf.model_args.attn_implementation: 'paged|sdpa' does not keep packed documents")
    assert "sdpa, eager, flex_attention, flash_attention_2, flash_attention_3" in problem
    for allowed in ("sdpa", "eager", "flex_attention", "flash_attention_2", "kernels-community/flash-attn3"):
        assert config_with({"packing": True}, allowed).sft_args.packing
    assert config_with({"packing": {"separate_documents": False}}, "paged|sdpa").sft_args.packing  # nothing to keep


def test_packing_refuses_context_parallelism():
    data = copy.deepcopy(BASE)
    data["sft_args"] = {"packing": True}
    data["training_args"] = {"parallelism_config": {"cp_size": 2}}
    with pytest.raises(ConfigError) as info:
        validate_config(data)
    assert info.value.problems == [
        "training_args.parallelism_config: context parallelism (cp_size 2) cannot keep packed documents apart; set "
        "cp_size 1 or sft_args.packing: false"
    ]


def test_linear_attention_models_are_not_packed(tmp_path):
    (tmp_path / "config.json").write_text('{"layer_types": ["linear_attention", "full_attention"]}')
    cfg = config_with({"packing": True})
    (problem,) = linear_attention_problems(cfg, tmp_path)
    assert problem.startswith("sft_args.packing: the model some/model has linear-attention layers (linear_attention)")
    assert linear_attention_problems(config_with({}), tmp_path) == []
    (tmp_path / "config.json").write_text('{"layer_types": ["full_attention", "sliding_attention"]}')
    assert linear_attention_problems(cfg, tmp_path) == []
