"""Packing is exact on the tiny model (CPU, fp32): every packed document gives the logits it gives alone, a packed
batch's loss is the token-weighted loss of its examples unpacked, no attention mask ever reaches the model, and a
packed `finetuning sft` run trains and reports how full its rows are."""

from __future__ import annotations

import json

import pytest
import torch
from transformers import AutoModelForCausalLM

from finetuning.cli import main
from finetuning.config.data import ChatTrainValidConfig
from finetuning.config.sft import PackingConfig, SFTArguments
from finetuning.data.collator import build_collator
from finetuning.data.sft import build_sft_datasets
from finetuning.data.templates import get_template
from finetuning.data.tokenize import IGNORE_INDEX
from finetuning.model.tokenizer import setup_tokenizer
from tests.conftest import FACTS, sft_config, write_yaml

MAX_LENGTH = 128


def data_conf() -> ChatTrainValidConfig:
    return ChatTrainValidConfig(
        training_data={"type": "CONCATENATION", "datasets": [{"path": str(FACTS)}]},
        validation_data={"type": "NONE"},
        chat_template_name="chat-ml",
    )


def datasets(tokenizer, packing):
    """(packed rows, the same examples unpacked), completion-masked, as the SFT recipe builds them."""
    markers, _ = setup_tokenizer(tokenizer, get_template("chat-ml"), data_conf())
    plain, _, _ = build_sft_datasets(data_conf(), SFTArguments(max_seq_length=MAX_LENGTH), tokenizer, markers)
    packed, _, _ = build_sft_datasets(
        data_conf(), SFTArguments(max_seq_length=MAX_LENGTH, packing=packing), tokenizer, markers
    )
    return packed, plain


def load(model_dir, tokenizer, attention: str):
    """The tiny model in fp32 with its config's defaults (use_cache true), grown to the chat-ml vocabulary."""
    model = AutoModelForCausalLM.from_pretrained(model_dir, attn_implementation=attention, dtype=torch.float32)
    model.resize_token_embeddings(len(tokenizer), mean_resizing=False)
    assert model.config.use_cache  # the case where transformers would skip the packed mask without the collator
    return model.eval()


def documents(row: dict) -> list[list[int]]:
    out, start = [], 0
    for length in row["seq_lengths"]:
        out.append(row["input_ids"][start : start + length])
        start += length
    return out


PACKINGS = {"bfd": PackingConfig(), "chunk": PackingConfig(strategy="chunk", overlap=16)}


def document_logits(logits: torch.Tensor, rows: list[dict], flattened: bool):
    """(document, its logits in the packed batch) for every document of `rows`."""
    flat = logits.reshape(-1, logits.shape[-1]) if flattened else None
    start = 0
    for index, row in enumerate(rows):
        offset = 0
        for document in documents(row):
            if flattened:
                yield document, flat[start : start + len(document)]
                start += len(document)
            else:
                yield document, logits[index, offset : offset + len(document)]
            offset += len(document)


@pytest.mark.parametrize("attention", ["sdpa", "eager"])
@pytest.mark.parametrize("strategy", list(PACKINGS))
@pytest.mark.parametrize("form", ["rows", "flattened"])
def test_every_packed_document_gives_its_logits_alone(tiny_model_dir, tokenizer, attention, strategy, form):
    packed, _ = datasets(tokenizer, PACKINGS[strategy])
    model = load(tiny_model_dir, tokenizer, attention)
    # the collator the recipe builds for this attention (rows), and the flattened one of the varlen kernels
    collator = build_collator(tokenizer, "bos-repurpose", PACKINGS[strategy], attention if form == "rows" else None)
    rows = packed.select([0, 1, len(packed) - 1]).to_list()  # the last row is the shortest: rows get padding
    assert len(rows[0]["seq_lengths"]) > 1 and len(rows[1]["seq_lengths"]) > 1  # several documents per row
    assert len(rows[2]["input_ids"]) < len(rows[0]["input_ids"])
    batch = collator(rows)
    with torch.no_grad():
        logits = model(**batch).logits
        checked = 0
        for document, inside in document_logits(logits, rows, form == "flattened"):
            alone = model(input_ids=torch.tensor([document])).logits[0]
            torch.testing.assert_close(inside, alone, atol=1e-5, rtol=0)
            checked += len(document)
        assert checked == sum(len(row["input_ids"]) for row in rows)
        # what the test guards against: with an attention mask the documents see each other, and the logits move
        leaky = model(**batch, attention_mask=torch.ones_like(batch["input_ids"])).logits
        assert (leaky - logits).abs().max() > 1e-3


def token_losses(model, input_ids: list[int], labels: list[int]) -> tuple[float, int]:
    """(sum of the token losses, trained tokens) of one example, unpacked, with the model's own shift."""
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([input_ids])).logits[0, :-1]
    targets = torch.tensor(labels[1:])
    loss = torch.nn.functional.cross_entropy(logits, targets, ignore_index=IGNORE_INDEX, reduction="sum")
    return loss.item(), int((targets != IGNORE_INDEX).sum())


@pytest.mark.parametrize("attention", ["sdpa", "eager"])
@pytest.mark.parametrize("form", ["rows", "flattened"])
def test_packed_batch_loss_is_the_token_weighted_loss_of_its_examples_unpacked(
    tiny_model_dir, tokenizer, attention, form
):
    packed, plain = datasets(tokenizer, PackingConfig())
    model = load(tiny_model_dir, tokenizer, attention)
    rows = packed.select(range(4)).to_list()
    collator = build_collator(tokenizer, "bos-repurpose", PackingConfig(), attention if form == "rows" else None)
    with torch.no_grad():
        packed_loss = model(**collator(rows)).loss.item()
    by_ids = {tuple(example["input_ids"]): example["labels"] for example in plain.to_list()}
    total, count = 0.0, 0
    for document in (document for row in rows for document in documents(row)):
        loss, tokens = token_losses(model, document, by_ids[tuple(document)])
        total, count = total + loss, count + tokens
    assert count > 0
    assert packed_loss == pytest.approx(total / count, rel=1e-5)


def test_the_trainer_feeds_the_model_no_attention_mask(tiny_model_dir, tokenizer, tmp_path):
    from trl import SFTConfig, SFTTrainer

    packed, _ = datasets(tokenizer, PackingConfig())
    model = load(tiny_model_dir, tokenizer, "sdpa")
    seen: list[dict] = []

    def record(_module, _args, kwargs):
        seen.append({key: kwargs.get(key) for key in ("attention_mask", "position_ids", "use_cache")})

    model.register_forward_pre_hook(record, with_kwargs=True)
    args = SFTConfig(
        output_dir=str(tmp_path),
        max_steps=2,
        per_device_train_batch_size=4,
        per_device_eval_batch_size=4,
        report_to="none",
        save_strategy="no",
        max_length=MAX_LENGTH,
        dataset_kwargs={"skip_prepare_dataset": True},
        use_cpu=True,
    )
    trainer = SFTTrainer(
        model=model,
        args=args,
        train_dataset=packed,
        eval_dataset=packed.select(range(4)),
        processing_class=tokenizer,
        data_collator=build_collator(tokenizer, "bos-repurpose", PackingConfig(), model.config._attn_implementation),
    )
    trainer.train()
    trainer.evaluate()
    assert len(seen) >= 3  # two training steps and one evaluation batch
    assert all(call["attention_mask"] is None for call in seen), seen
    assert all(call["position_ids"] is not None and call["use_cache"] is False for call in seen)
    assert all(int((call["position_ids"] == 0).sum()) > 1 for call in seen)  # several documents per batch


@pytest.mark.slow
def test_packed_sft_run_trains_and_reports_packing(tmp_path, tiny_model_dir):
    config = sft_config(
        tmp_path,
        tiny_model_dir,
        data_conf={"validation_data": {"type": "AUTO_SPLIT", "ratio": 0.2}},
        training_args={"max_steps": 30, "eval_strategy": "steps", "eval_steps": 30},
        sft_args={"max_seq_length": MAX_LENGTH, "packing": True},
    )
    assert main(["sft", str(write_yaml(tmp_path / "packed.yaml", config))]) == 0
    out = tmp_path / "out"
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    history = [record["loss"] for record in records if "loss" in record]
    assert sum(history[-5:]) / 5 < 0.7 * sum(history[:5]) / 5, history
    assert any("eval_loss" in record for record in records)  # the packed validation rows evaluate too
    summary = (out / "summary.md").read_text()
    assert "| packing |" in summary and "of token slots used" in summary
    assert "| tokens per optimizer step |" in summary
