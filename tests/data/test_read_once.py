"""Each data file is opened and parsed once per run: the data fingerprint, the pre-flight's row checks and the
recipe's datasets all come from that one read (data/readers.py read_file), which is forgotten when the run ends.
Its rows are parsed on each walk and never kept whole as Python objects."""

from __future__ import annotations

import builtins
import io
import os
import shutil
from pathlib import Path

from finetuning.cli import main
from finetuning.data import readers
from finetuning.data.readers import file_digest, forget_read_files, read_rows, sft_row_problem
from tests.conftest import FACTS, sft_config, write_yaml


def count_opens(monkeypatch, watched: Path) -> list[str]:
    """Record every open of `watched` through Python's file objects (pathlib's read_bytes / open go through
    io.open, which builtins.open is)."""
    opens: list[str] = []
    real_open = io.open

    def counting_open(file, *args, **kwargs):
        if isinstance(file, (str, os.PathLike)) and Path(os.fspath(file)).resolve() == watched.resolve():
            opens.append(os.fspath(file))
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(io, "open", counting_open)
    monkeypatch.setattr(builtins, "open", counting_open)
    return opens


def test_one_sft_run_opens_its_data_file_once(tmp_path, tiny_model_dir, monkeypatch):
    data = tmp_path / "data.jsonl"
    shutil.copy(FACTS, data)
    document = sft_config(tmp_path, tiny_model_dir, data=data, training_args={"max_steps": 1})
    config = write_yaml(tmp_path / "c.yaml", document)
    opens = count_opens(monkeypatch, data)
    parses = []
    real_parse = readers._iter_json_rows
    monkeypatch.setattr(readers, "_iter_json_rows", lambda text: parses.append(1) or real_parse(text))
    assert main(["sft", str(config)]) == 0
    assert len(opens) == 1, opens  # fingerprint, pre-flight checks and recipe: one read
    # two walks over the text, the checks' and the recipe's, each parsing row by row: no parsed copy is kept
    assert len(parses) == 2


def test_a_changed_file_is_read_again_and_forgetting_drops_what_was_read(tmp_path, monkeypatch):
    data = tmp_path / "data.jsonl"
    shutil.copy(FACTS, data)
    opens = count_opens(monkeypatch, data)
    first = read_rows(str(data), sft_row_problem)
    assert file_digest(str(data)) is not None and len(opens) == 1  # the digest comes from the same read
    with data.open("a", encoding="utf-8") as handle:  # one more row: size and mtime change
        handle.write(FACTS.read_text(encoding="utf-8").splitlines()[0] + "\n")
    assert len(read_rows(str(data), sft_row_problem)) == len(first) + 1
    assert len(opens) == 3  # the append, and the new read
    forget_read_files()
    read_rows(str(data), sft_row_problem)
    assert len(opens) == 4
