"""Weights & Biases from the config's `wandb` section, in WANDB_MODE=offline: files written locally, nothing sent."""

from __future__ import annotations

import os

import pytest

from finetuning.cli import main
from finetuning.config.tracking import WandbConfig
from finetuning.tracking.wandb import apply_wandb
from tests.conftest import sft_config, write_yaml

pytest.importorskip("wandb")


def test_section_sets_report_to_and_the_callback_environment():
    conf = WandbConfig(project="p", entity="team", run_name="r", tags=["a", "b"], watch="gradients", mode="offline")
    environ: dict = {}
    args = apply_wandb(conf, {"report_to": ["tensorboard"]}, environ)
    assert args["report_to"] == ["tensorboard", "wandb"] and args["run_name"] == "r"
    assert environ == {
        "WANDB_PROJECT": "p",
        "WANDB_ENTITY": "team",
        "WANDB_TAGS": "a,b",
        "WANDB_WATCH": "gradients",
        "WANDB_LOG_MODEL": "false",
        "WANDB_MODE": "offline",
    }
    assert apply_wandb(None, {"report_to": "none"}, environ) == {"report_to": "none"}


@pytest.mark.slow
def test_offline_run_writes_metrics_and_config_locally(tmp_path, tiny_model_dir):
    os.environ["WANDB_DIR"] = str(tmp_path / "wandb-files")  # restored after the test (conftest)
    os.environ["WANDB_API_KEY"] = "SECRET_WANDB_KEY_0123456789012345678901"  # must never be written anywhere
    (tmp_path / "wandb-files").mkdir()
    config = sft_config(tmp_path, tiny_model_dir, training_args={"max_steps": 3})
    del config["training_args"]["report_to"]  # the section turns W&B on by itself
    config["wandb"] = {"project": "tiny", "run_name": "offline-test", "mode": "offline"}
    assert main(["sft", str(write_yaml(tmp_path / "c.yaml", config))]) == 0

    runs = list((tmp_path / "wandb-files" / "wandb").glob("offline-run-*"))
    assert len(runs) == 1
    (records,) = runs[0].glob("run-*.wandb")  # the offline record log `wandb sync` would upload
    data = records.read_bytes()
    assert b"train/loss" in data and b"train/global_step" in data  # metrics were logged
    assert b"offline-test" in data and b"tiny" in data  # run name and project
    for path in [*(tmp_path / "wandb-files").rglob("*"), *(tmp_path / "out").rglob("*")]:
        if path.is_file():
            assert b"SECRET_WANDB_KEY" not in path.read_bytes(), path
