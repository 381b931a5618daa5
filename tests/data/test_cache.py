"""Tokenized once (data/cache.py): the same config reuses its cached datasets, any changed input is a miss, a broken
entry is rebuilt, and of several processes only one tokenizes."""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from finetuning.config.loading import load_any_config
from finetuning.data.cache import MARKER, cache_location
from finetuning.data.preference import build_dpo_datasets
from finetuning.data.sft import build_sft_datasets
from finetuning.train.run import prepare_tokenizer
from tests.conftest import FACTS, REPO, deep_update, sft_config, write_yaml

REUSED, BUILT = "cached tokenized data reused from", "tokenized data cached in"
PREFERENCES = REPO / "examples" / "data" / "preferences.jsonl"


def cached_config(tmp_path: Path, model_dir: Path, data: Path = FACTS, **changes) -> dict:
    """A small SFT config whose data cache is this test's own directory."""
    base = sft_config(tmp_path, model_dir, data, data_conf={"prepared_path": str(tmp_path / "prepared")})
    return deep_update(base, changes)


def build(tmp_path: Path, config: dict):
    """(train, validation, report) as `finetuning sft` builds them from `config`."""
    cfg = load_any_config(write_yaml(tmp_path / "c.yaml", config))
    tokenizer, markers, _ = prepare_tokenizer(cfg)
    if cfg.method == "dpo":
        return build_dpo_datasets(cfg.data_conf, 128, None, tokenizer)
    completions = markers if cfg.sft_args.train_on_completions_only else None
    return build_sft_datasets(cfg.data_conf, cfg.sft_args, tokenizer, completions)


def messages(caplog) -> list[str]:
    return [record.getMessage() for record in caplog.records if record.name == "finetuning.data.cache"]


def assert_same(first, second) -> None:
    assert first.column_names == second.column_names
    for column in first.column_names:
        assert first[column] == second[column], column


def test_second_build_of_the_same_config_reuses_the_cache(tmp_path, tiny_model_dir, caplog):
    caplog.set_level(logging.INFO, logger="finetuning.data.cache")
    config = cached_config(
        tmp_path, tiny_model_dir, data_conf={"validation_data": {"type": "AUTO_SPLIT", "ratio": 0.2, "seed": 3}}
    )
    train, evaluation, report = build(tmp_path, config)
    assert [m for m in messages(caplog) if m.startswith("data: ")] == [f"data: {BUILT} {cache_location(train)}"]
    entry = cache_location(train)
    assert entry.parent == tmp_path / "prepared" and (entry / MARKER).is_file()
    stamp = (entry / MARKER).stat().st_mtime_ns
    caplog.clear()

    train_again, evaluation_again, report_again = build(tmp_path, config)
    assert messages(caplog) == [f"data: {REUSED} {entry}"]  # one line, and nothing tokenized
    assert (entry / MARKER).stat().st_mtime_ns == stamp
    assert_same(train, train_again)
    assert_same(evaluation, evaluation_again)
    assert report_again == report and report.train_examples == len(train) > 0 and report.eval_examples > 0
    assert sorted(p.name for p in (tmp_path / "prepared").iterdir()) == [entry.name]  # no temporary left


def _change_data_byte(tmp_path: Path, config: dict) -> dict:
    data = Path(config["data_conf"]["training_data"]["datasets"][0]["path"])
    lines = data.read_text(encoding="utf-8").splitlines(keepends=True)
    lines[0] = lines[0].replace("Yorren", "Yorrem", 1)
    assert "Yorrem" in lines[0]
    data.write_text("".join(lines), encoding="utf-8")
    return config


def _change_tokenizer_file(tmp_path: Path, config: dict) -> dict:
    model = Path(config["run_conf"]["model"])
    config_file = model / "tokenizer_config.json"
    config_file.write_text(config_file.read_text(encoding="utf-8").replace("{", '{"model_max_length": 77, ', 1))
    return config


CHANGES = {
    "data file byte": _change_data_byte,
    "template": lambda tmp_path, config: deep_update(
        config, {"data_conf": {"chat_template_name": "mistral-with-system"}}
    ),
    "max_seq_length": lambda tmp_path, config: deep_update(config, {"sft_args": {"max_seq_length": 64}}),
    "train_on_completions_only": lambda tmp_path, config: deep_update(
        config, {"sft_args": {"train_on_completions_only": False}}
    ),
    "split seed": lambda tmp_path, config: deep_update(
        config, {"data_conf": {"validation_data": {"type": "AUTO_SPLIT", "ratio": 0.2, "seed": 4}}}
    ),
    "tokenizer file": _change_tokenizer_file,
}


@pytest.mark.parametrize("change", CHANGES)
def test_each_changed_input_is_a_miss(tmp_path, tiny_model_dir, caplog, change):
    caplog.set_level(logging.INFO, logger="finetuning.data.cache")
    model = shutil.copytree(tiny_model_dir, tmp_path / "model")  # changes of the tokenizer stay in this test
    data = Path(shutil.copy(FACTS, tmp_path / "facts.jsonl"))
    config = cached_config(
        tmp_path, model, data, data_conf={"validation_data": {"type": "AUTO_SPLIT", "ratio": 0.2, "seed": 3}}
    )
    first = cache_location(build(tmp_path, config)[0])
    caplog.clear()
    second = cache_location(build(tmp_path, CHANGES[change](tmp_path, config))[0])
    assert second != first
    assert [m for m in messages(caplog) if m.startswith("data: ")] == [f"data: {BUILT} {second}"]


def test_half_written_or_corrupt_entry_is_rebuilt(tmp_path, tiny_model_dir, caplog):
    caplog.set_level(logging.INFO, logger="finetuning.data.cache")
    config = cached_config(tmp_path, tiny_model_dir)
    train, _, _ = build(tmp_path, config)
    entry = cache_location(train)

    (entry / MARKER).unlink()  # half-written: the marker is written last
    caplog.clear()
    rebuilt, _, _ = build(tmp_path, config)
    assert messages(caplog) == [f"data: {BUILT} {entry}"]
    assert_same(train, rebuilt)

    arrow = next((entry / "train").glob("*.arrow"))
    arrow.write_bytes(arrow.read_bytes()[: arrow.stat().st_size // 2])  # torn file: the marker is there
    caplog.clear()
    rebuilt, _, _ = build(tmp_path, config)
    assert any(m.startswith(f"data: cache entry {entry} cannot be read") for m in messages(caplog))
    assert messages(caplog)[-1] == f"data: {BUILT} {entry}"
    assert_same(train, rebuilt)


def test_dpo_pairs_are_cached_too(tmp_path, tiny_model_dir, caplog):
    caplog.set_level(logging.INFO, logger="finetuning.data.cache")
    config = cached_config(tmp_path, tiny_model_dir, PREFERENCES, method="dpo")
    del config["sft_args"]
    train, _, report = build(tmp_path, config)
    caplog.clear()
    again, _, report_again = build(tmp_path, config)
    assert messages(caplog) == [f"data: {REUSED} {cache_location(train)}"]
    assert_same(train, again)
    assert report_again == report


SCRIPT = """
import logging, os, sys
logging.basicConfig(level=logging.INFO, format=f"rank{{os.environ['RANK']}} %(message)s")
sys.path.insert(0, {repo!r})
from tests.data.test_cache import build
from pathlib import Path
train, _, report = build(Path({tmp!r}) / os.environ["RANK"], {config!r})
print(f"rank{{os.environ['RANK']}} rows {{len(train)}} tokens {{report.train_tokens}}")
"""


@pytest.mark.slow
def test_two_processes_tokenize_once(tmp_path, tiny_model_dir):
    """torchrun, 2 CPU processes: the first tokenizes and caches, the second waits and reads the same entry."""
    config = cached_config(tmp_path, tiny_model_dir)
    for rank in "01":
        (tmp_path / rank).mkdir()
    script = tmp_path / "build.py"
    script.write_text(SCRIPT.format(repo=str(REPO), tmp=str(tmp_path), config=config), encoding="utf-8")
    result = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", str(script)],
        capture_output=True,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stderr.count(BUILT) == 1 and "rank0 data: " + BUILT in result.stderr, result.stderr[-3000:]
    # the second waits for the first (or, started late, finds its whole entry): it never tokenizes
    assert "rank1 data: waiting for the first process" in result.stderr or f"rank1 data: {REUSED}" in result.stderr
    rows = sorted(line.split(" ", 1)[1] for line in result.stdout.splitlines() if line.startswith("rank"))
    assert len(rows) == 2 and rows[0] == rows[1]
    assert len(list((tmp_path / "prepared").iterdir())) == 1
