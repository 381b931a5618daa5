"""The SFT evaluation loss is token-weighted (train/evaluation.py): the same for any eval batch size, packed or not,
and equal to sum of token losses / trained tokens computed example by example."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from finetuning.data.collator import build_collator
from finetuning.train.run import build_trainer
from tests.conftest import REPO, sft_config, write_jsonl, write_yaml

LENGTHS = [3, 180, 9, 64, 2, 121, 17, 250, 5, 40, 96]  # very different lengths: batches of very different means
REL = 1e-4
PACKED_LENGTH = 300  # the LENGTHS packed into 3 rows


@pytest.fixture(scope="module")
def sharp_model_dir(tiny_model_dir, tmp_path_factory):
    """The tiny model with its output layer scaled up: a random model predicts every token about equally badly, so
    token losses (and so per-batch means) would hardly differ; sharpened, they range widely, as a trained model's do."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    with torch.no_grad():
        model.get_output_embeddings().weight.mul_(40.0)
    out = tmp_path_factory.mktemp("sharp") / "model"
    model.save_pretrained(out)
    AutoTokenizer.from_pretrained(tiny_model_dir).save_pretrained(out)
    return out


def validation_rows(vocab_size: int) -> list[dict]:
    """Pre-tokenized examples of the LENGTHS, the first third of each masked as a prompt would be."""
    generator = torch.Generator().manual_seed(0)
    rows = []
    for length in LENGTHS:
        ids = torch.randint(3, vocab_size, (length,), generator=generator).tolist()
        prompt = length // 3
        rows.append({"input_ids": ids, "labels": [-100] * prompt + ids[prompt:]})
    return rows


def reference_loss(model, rows: list[dict]) -> float:
    """Sum of token cross-entropies / trained tokens, each example alone (no padding, no batch)."""
    total, tokens = 0.0, 0
    with torch.no_grad():
        for row in rows:
            logits = model(torch.tensor([row["input_ids"]])).logits[0, :-1]
            targets = torch.tensor(row["labels"][1:])
            total += torch.nn.functional.cross_entropy(logits, targets, ignore_index=-100, reduction="sum").item()
            tokens += int((targets != -100).sum())
    return total / tokens


def eval_metrics(
    model_dir,
    rows,
    tmp_path,
    batch_size: int,
    trainer_class=None,
    model=None,
    padding_free=False,
    pack=False,
    **arguments,
) -> dict:
    """`evaluate()` on `rows` of an SFT trainer as build_trainer makes it (or of `trainer_class` as it is). With
    `padding_free`, each batch is one row of its examples end to end (position ids restart, no attention mask); with
    `pack`, the rows are first packed (bfd, PACKED_LENGTH tokens a row) and collated as `finetuning sft` does."""
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    from finetuning.config.sft import PackingConfig
    from finetuning.data.packing import pack as pack_rows

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    tokenizer.pad_token = tokenizer.bos_token
    args = SFTConfig(
        output_dir=str(tmp_path / f"out-{batch_size}"),
        per_device_eval_batch_size=batch_size,
        report_to="none",
        use_cpu=True,
        dataset_kwargs={"skip_prepare_dataset": True},
        **arguments,
    )
    packing = PackingConfig() if pack else False
    evaluation = Dataset.from_list(rows)
    if packing:
        evaluation = pack_rows(evaluation, PACKED_LENGTH, packing)
        assert len(evaluation) < len(rows) and "seq_lengths" in evaluation.column_names
    kwargs = dict(
        model=model or AutoModelForCausalLM.from_pretrained(model_dir),
        args=args,
        train_dataset=Dataset.from_list(rows),
        eval_dataset=evaluation,
        processing_class=tokenizer,
        data_collator=padding_free_collator(tokenizer)
        if padding_free
        else build_collator(tokenizer, "bos-repurpose", packing=packing),
    )
    trainer = trainer_class(**kwargs) if trainer_class else build_trainer(SFTTrainer, **kwargs)
    return trainer.evaluate()


def padding_free_collator(tokenizer):
    from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

    return DataCollatorForLanguageModeling(pad_token_id=tokenizer.pad_token_id, padding_free=True)


def relative(a: float, b: float) -> float:
    return abs(a - b) / abs(b)


@pytest.fixture(scope="module")
def rows_and_reference(sharp_model_dir):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(sharp_model_dir)
    rows = validation_rows(model.config.vocab_size)
    return rows, reference_loss(model, rows)


@pytest.mark.slow
def test_eval_loss_is_the_same_for_any_eval_batch_size_and_equals_the_per_example_reference(
    sharp_model_dir, rows_and_reference, tmp_path
):
    rows, reference = rows_and_reference
    for batch_size in (1, 2, 3, 7):
        metrics = eval_metrics(sharp_model_dir, rows, tmp_path, batch_size)
        assert relative(metrics["eval_loss"], reference) <= REL, (batch_size, metrics["eval_loss"], reference)
        assert 0.0 <= metrics["eval_mean_token_accuracy"] <= 1.0  # TRL's own eval metrics are still there
        assert metrics["eval_entropy"] >= 0.0


@pytest.mark.slow
def test_the_plain_trainer_mean_of_batch_means_moves_with_batch_size(sharp_model_dir, rows_and_reference, tmp_path):
    """What the mixin fixes, so that the test above can fail: without it, batch size 7 is off the reference."""
    from trl import SFTTrainer

    rows, reference = rows_and_reference
    plain = eval_metrics(sharp_model_dir, rows, tmp_path, 7, trainer_class=SFTTrainer)["eval_loss"]
    assert relative(plain, reference) > 10 * REL, (plain, reference)


@pytest.mark.slow
def test_full_predictions_and_a_peft_model_keep_the_token_weighted_loss(sharp_model_dir, rows_and_reference, tmp_path):
    """`prediction_loss_only: false` (logits gathered too) and a LoRA model (a fresh adapter is the identity)."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    rows, reference = rows_and_reference
    metrics = eval_metrics(sharp_model_dir, rows, tmp_path, 3, prediction_loss_only=False)
    assert relative(metrics["eval_loss"], reference) <= REL
    lora = LoraConfig(r=4, target_modules=["q_proj", "v_proj"])
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(sharp_model_dir), lora)
    assert relative(eval_metrics(sharp_model_dir, rows, tmp_path, 2, model=model)["eval_loss"], reference) <= REL


@pytest.mark.slow
def test_padding_free_and_packed_batches_give_the_same_loss(sharp_model_dir, rows_and_reference, tmp_path):
    """One row per batch, documents kept apart by their position ids (sdpa without a mask): the examples end to end
    (padding-free), or packed rows of several examples each, end to end."""
    rows, reference = rows_and_reference
    for batch_size in (1, 3, 7):
        metrics = eval_metrics(sharp_model_dir, rows, tmp_path, batch_size, padding_free=True)
        assert relative(metrics["eval_loss"], reference) <= REL, (batch_size, metrics["eval_loss"], reference)
    for batch_size in (1, 2, 3):
        metrics = eval_metrics(sharp_model_dir, rows, tmp_path, batch_size, pack=True)
        assert relative(metrics["eval_loss"], reference) <= REL, (batch_size, metrics["eval_loss"], reference)


DDP_SCRIPT = """
import json, sys
from pathlib import Path
import torch.distributed
from tests.train.test_evaluation import eval_metrics

spec = json.loads(Path(sys.argv[1]).read_text())
modes = {"padded": {}, "padding-free": {"padding_free": True}, "packed": {"pack": True}}
losses = {
    f"{mode}-{batch_size}": eval_metrics(
        spec["model"], spec["rows"], Path(spec["tmp"]), batch_size, **modes[mode]
    )["eval_loss"]
    for mode in modes
    for batch_size in spec["batch_sizes"]
}
if torch.distributed.get_rank() == 0:
    Path(spec["result"]).write_text(json.dumps(losses))
"""


@pytest.mark.slow
def test_two_processes_give_the_same_loss_with_the_last_batch_evened_out(sharp_model_dir, rows_and_reference, tmp_path):
    """11 examples (packed: 3 rows) on 2 processes: accelerate completes each process's last batch with repeats of
    the first examples (rows), partly or wholly (7 a process: the second process's only batch is repeats); the repeats
    add nothing, in padded, padding-free and packed batches (where they are the tail of the batch's one row)."""
    rows, reference = rows_and_reference
    spec = tmp_path / "spec.json"
    result = tmp_path / "losses.json"
    spec.write_text(
        json.dumps(
            {
                "model": str(sharp_model_dir),
                "rows": rows,
                "tmp": str(tmp_path),
                "batch_sizes": [1, 2, 3, 7],
                "result": str(result),
            }
        )
    )
    script = tmp_path / "ddp_eval.py"
    script.write_text(DDP_SCRIPT)
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", str(script), str(spec)]
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-4000:]
    losses = json.loads(result.read_text())
    assert len(losses) == 12
    for key, loss in losses.items():
        assert relative(loss, reference) <= REL, (key, loss, reference)


def conversations(sizes: list[int]) -> list[dict]:
    """Chat rows whose answers are `size` sentences long: a few tokens to several hundred."""
    sentence = "The capital of Tusello is Yorren, on the Vasren river. "
    return [
        {
            "messages": [
                {"role": "user", "content": f"Tell me about place {i}."},
                {"role": "assistant", "content": sentence * size},
            ]
        }
        for i, size in enumerate(sizes)
    ]


def run_config(tmp_path, model_dir, name: str, eval_batch_size: int, **sft_args) -> Path:
    """A `finetuning sft` config that evaluates before its first step (eval_on_start), with the tokenizer's own chat
    template (no tokens added: the model evaluated at step 0 is the one in `model_dir`)."""
    validation = write_jsonl(tmp_path / "validation.jsonl", conversations([1, 14, 2, 6, 25, 3, 9]))
    config = sft_config(
        tmp_path / name,
        model_dir,
        data_conf={
            "validation_data": {"type": "CONCATENATION", "datasets": [{"path": str(validation)}]},
            "chat_template_name": "keep-original",
        },
        training_args={"max_steps": 1, "eval_strategy": "steps", "eval_steps": 1000, "eval_on_start": True},
        batchsize_conf={"per_device_eval_batch_size": eval_batch_size},
        sft_args={"max_seq_length": 1024, **sft_args},
    )
    return write_yaml(tmp_path / f"{name}.yaml", config)


def step_zero_eval_loss(output_dir: Path) -> float:
    from finetuning.tracking.metrics_file import read_metrics

    return next(
        r["eval_loss"] for r in read_metrics(output_dir / "metrics.jsonl") if r["step"] == 0 and "eval_loss" in r
    )


def pipeline_validation_rows(config_path: Path) -> list[dict]:
    """The validation examples as the run tokenized them (the data pipeline, from its cache)."""
    from finetuning.config import load_any_config
    from finetuning.data.sft import build_sft_datasets
    from finetuning.train.run import prepare_tokenizer

    cfg = load_any_config(config_path)
    tokenizer, markers, _ = prepare_tokenizer(cfg)
    _, validation, _ = build_sft_datasets(cfg.data_conf, cfg.sft_args, tokenizer, markers)
    return [{"input_ids": row["input_ids"], "labels": row["labels"]} for row in validation]


@pytest.mark.slow
def test_step_zero_eval_loss_of_a_real_run_equals_the_per_example_reference(sharp_model_dir, tmp_path):
    from transformers import AutoModelForCausalLM

    from finetuning.cli import main

    config = run_config(tmp_path, sharp_model_dir, "run", eval_batch_size=3)
    assert main(["sft", str(config)]) == 0
    out = tmp_path / "run" / "out"
    rows = pipeline_validation_rows(config)
    assert len(rows) == 7 and len({len(row["input_ids"]) for row in rows}) == 7
    reference = reference_loss(AutoModelForCausalLM.from_pretrained(sharp_model_dir), rows)
    assert relative(step_zero_eval_loss(out), reference) <= REL


@pytest.mark.slow
def test_packing_changes_nothing_in_the_eval_loss(sharp_model_dir, tmp_path):
    """Issue 14, exactness test (c): the same model on the same validation set, packed (bfd: several examples a row,
    kept apart by position ids) and not, with eval batch sizes 1, 2 and 7: the same step-0 eval_loss as the
    per-example reference."""
    from transformers import AutoModelForCausalLM

    from finetuning.cli import main

    losses = {}
    for packing in (False, True):
        for batch_size in (1, 2, 7):
            name = f"packing-{packing}-{batch_size}"
            config = run_config(tmp_path, sharp_model_dir, name, eval_batch_size=batch_size, packing=packing)
            assert main(["sft", str(config)]) == 0
            losses[name] = step_zero_eval_loss(tmp_path / name / "out")
    packed_rows = pipeline_validation_rows(run_config(tmp_path, sharp_model_dir, "packed", 1, packing=True))
    rows = pipeline_validation_rows(run_config(tmp_path, sharp_model_dir, "unpacked", eval_batch_size=1))
    assert len(rows) == 7 and 1 < len(packed_rows) < 7  # packed indeed: several examples a row
    assert sum(len(row["input_ids"]) for row in packed_rows) == sum(len(row["input_ids"]) for row in rows)
    reference = reference_loss(AutoModelForCausalLM.from_pretrained(sharp_model_dir), rows)
    for name, loss in losses.items():
        assert relative(loss, reference) <= REL, (name, loss, reference)
