"""Fixtures shared by all tests: offline mode, the tiny local model, and a writer for small SFT configs."""

from __future__ import annotations

import atexit
import copy
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import pytest
import yaml

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ["TOKENIZERS_PARALLELISM"] = "false"
os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")
# The engine's on-disk cache (trainer field tables, check outcomes; finetuning.checks_cache): one per test session,
# never the user's ~/.cache or the working tree. Set at import, so even collection-time code and subprocesses use it.
os.environ["FINETUNING_CACHE"] = tempfile.mkdtemp(prefix="finetuning-test-cache-")
atexit.register(shutil.rmtree, os.environ["FINETUNING_CACHE"], ignore_errors=True)

REPO = Path(__file__).resolve().parent.parent
FACTS = REPO / "examples" / "data" / "facts.jsonl"

CONVERSATION = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "Capital of Tusello?"},
    {"role": "assistant", "content": "Yorren."},
    {"role": "user", "content": "And its river?"},
    {"role": "assistant", "content": "The Vasren."},
]


@pytest.fixture(autouse=True)
def restore_environment():
    """Runs set tracking variables (MLFLOW_*, DISABLE_MLFLOW_INTEGRATION, HF_TOKEN) in-process: undo them per test."""
    saved = dict(os.environ)
    yield
    os.environ.clear()
    os.environ.update(saved)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """A 2-layer, 64-wide random Llama with a BPE tokenizer trained on the demo facts (no network)."""
    from finetuning.tools.tiny_model import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("tiny") / "model", [FACTS])


@pytest.fixture
def tokenizer(tiny_model_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model_dir)


def deep_update(base: dict, changes: dict) -> dict:
    out = copy.deepcopy(base)
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_update(out[key], value)
        else:
            out[key] = value
    return out


def sft_config(tmp_path: Path, model_dir: Path, data: Path = FACTS, **changes: Any) -> dict:
    """A small, fast SFT config in the seed-000 schema, with `changes` deep-merged."""
    base = {
        "method": "sft",
        "data_conf": {
            "training_data": {"type": "CONCATENATION", "datasets": [{"path": str(data)}]},
            "validation_data": {"type": "NONE"},
            "chat_template_name": "chat-ml",
        },
        "training_args": {
            "output_dir": str(tmp_path / "out"),
            "max_steps": 30,
            "learning_rate": 0.003,
            "lr_scheduler_type": "constant",
            "logging_steps": 1,
            "save_strategy": "no",
            "seed": 42,
            "report_to": "none",
            "disable_tqdm": True,
        },
        "batchsize_conf": {"total_train_batch_size": 8, "max_per_device_train_batch_size": 8},
        "peft_conf": {"peft_type": "NO_PEFT"},
        "run_conf": {"model": str(model_dir)},
        "sft_args": {"max_seq_length": 256, "train_on_completions_only": True},
    }
    return deep_update(base, changes)


def write_yaml(path: Path, document: dict) -> Path:
    path.write_text(yaml.safe_dump(document, sort_keys=False), encoding="utf-8")
    return path


def write_jsonl(path: Path, rows: list) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path
