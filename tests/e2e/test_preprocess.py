"""`finetuning preprocess CONFIG` does the data work only, and the training command of the same config reuses it."""

from __future__ import annotations

import logging

from finetuning.cli import main
from finetuning.data.cache import MARKER
from tests.conftest import sft_config, write_yaml


def test_preprocess_then_sft_reuses_the_cached_data(tmp_path, tiny_model_dir, capsys, caplog):
    config = sft_config(
        tmp_path,
        tiny_model_dir,
        data_conf={"prepared_path": str(tmp_path / "prepared")},
        training_args={"max_steps": 1},
        batchsize_conf={"total_train_batch_size": 2, "max_per_device_train_batch_size": 2},
    )
    path = str(write_yaml(tmp_path / "c.yaml", config))
    assert main(["preprocess", path]) == 0
    printed = capsys.readouterr().out
    (entry,) = (tmp_path / "prepared").iterdir()
    assert f"tokenized data cached in {entry}" in printed and "training examples: " in printed
    assert not (tmp_path / "out").exists()  # data work only: no model loaded, no run started
    stamp = (entry / MARKER).stat().st_mtime_ns

    caplog.set_level(logging.INFO)
    caplog.clear()
    assert main(["sft", path]) == 0
    cache_lines = [r.getMessage() for r in caplog.records if r.name == "finetuning.data.cache"]
    assert cache_lines == [f"data: cached tokenized data reused from {entry}"]
    assert (entry / MARKER).stat().st_mtime_ns == stamp and list((tmp_path / "prepared").iterdir()) == [entry]
    assert (tmp_path / "out" / "checkpoint-final").is_dir()


def test_preprocess_reports_bad_data_as_a_user_error(tmp_path, tiny_model_dir, capsys):
    data = tmp_path / "bad.jsonl"
    data.write_text('{"messages": "not a list"}\n', encoding="utf-8")
    path = str(write_yaml(tmp_path / "c.yaml", sft_config(tmp_path, tiny_model_dir, data)))
    assert main(["preprocess", path]) == 2
    assert f"{data}:1:" in capsys.readouterr().err
