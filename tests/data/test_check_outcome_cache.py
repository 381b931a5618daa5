"""A repeat run's data checks: the outcome of the row checks is kept for the exact file bytes, so an unchanged file
is not parsed again (with the tokenized-data cache, a repeat run parses nothing), and a changed one is."""

from __future__ import annotations

from finetuning.config.data import ChatTrainValidConfig
from finetuning.data import readers
from finetuning.data.sft import sft_data_problems
from tests.conftest import CONVERSATION, write_jsonl


def data_conf(path) -> ChatTrainValidConfig:
    return ChatTrainValidConfig.model_validate(
        {
            "training_data": {"type": "CONCATENATION", "datasets": [{"path": str(path)}]},
            "validation_data": {"type": "NONE"},
            "chat_template_name": "chat-ml",
        }
    )


def test_unchanged_files_are_not_parsed_again_and_changed_ones_are(tmp_path, monkeypatch):
    parses = []
    original = readers._iter_json_rows
    monkeypatch.setattr(readers, "_iter_json_rows", lambda text: parses.append(1) or original(text))
    path = write_jsonl(tmp_path / "d.jsonl", [{"messages": CONVERSATION}] * 3)
    conf = data_conf(path)

    assert sft_data_problems(conf, require_assistant=True) == [] and len(parses) == 1
    readers.forget_read_files()  # the next run
    assert sft_data_problems(conf, require_assistant=True) == [] and len(parses) == 1  # outcome kept, not parsed

    write_jsonl(path, [{"messages": CONVERSATION}, {"messages": []}])  # other bytes: checked again
    readers.forget_read_files()
    [problem] = sft_data_problems(conf, require_assistant=True)
    assert problem.startswith(f"{path}:2: ") and len(parses) == 2
    readers.forget_read_files()
    assert sft_data_problems(conf, require_assistant=True) == [problem] and len(parses) == 2  # the problem, kept
    assert sft_data_problems(conf, require_assistant=False) and len(parses) == 3  # another check: parsed again
