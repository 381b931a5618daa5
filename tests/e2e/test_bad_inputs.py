"""A corpus of bad inputs. Every bad config and every bad data file must end the same way: exit code 2, one `error:`
block naming the config key (dotted path) or the resolved absolute `file:line`, no traceback, and nothing trained.

The two tables, BAD_CONFIGS and BAD_DATA, are the corpus; each entry is (id, what is wrong, the expected message).
Every case runs in-process and fails before a model loads, so the whole corpus takes seconds. A few cases run as a
real process too, to show that nothing prints a traceback at process level either.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from finetuning.cli import main
from tests.conftest import FACTS, REPO, deep_update, sft_config, write_jsonl, write_yaml

PREFERENCES = REPO / "examples" / "data" / "preferences.jsonl"


def user(text: str = "Capital of Tusello?") -> dict:
    return {"role": "user", "content": text}


def assistant(text: str = "Yorren.") -> dict:
    return {"role": "assistant", "content": text}


def system(text: str = "Be brief.") -> dict:
    return {"role": "system", "content": text}


GOOD = {"messages": [user(), assistant()]}
PAIR = {"prompt_messages": [user()], "chosen_messages": [assistant()], "rejected_messages": [assistant("Quellton.")]}
UNPAIRED = {"prompt_messages": [user()], "completion_messages": [assistant()], "label": True}
GOOD_ROW = {"sft": GOOD, "dpo": PAIR, "kto": UNPAIRED}

# --- configs ---------------------------------------------------------------------------------------------------------


def preference_config(tmp_path: Path, model_dir: Path, method: str, data: Path = PREFERENCES) -> dict:
    """examples/dpo-facts.yaml made small and local: the tiny model, its own template (DPO adds no tokens)."""
    config = yaml.safe_load((REPO / "examples" / "dpo-facts.yaml").read_text())
    config["method"] = method
    config["run_conf"]["model"] = str(model_dir)
    config["data_conf"]["training_data"]["datasets"] = [{"path": str(data)}]
    config["data_conf"]["validation_data"] = {"type": "NONE"}
    config["data_conf"]["chat_template_name"] = "keep-original"
    config["training_args"].update(output_dir=str(tmp_path / "out"), max_steps=1)
    for key in ("eval_strategy", "loss_type", "max_prompt_length", "num_train_epochs"):
        config["training_args"].pop(key)
    return config


def base_config(tmp_path: Path, model_dir: Path, base: str, data: Path | None = None) -> dict:
    if base == "sft":
        return sft_config(tmp_path, model_dir, data=data or FACTS)
    return preference_config(tmp_path, model_dir, base, data=data or PREFERENCES)


COMMAND = {"sft": "sft", "dpo": "dpo", "kto": "dpo"}


# --- running a case and judging its output ---------------------------------------------------------------------------


def run_in_process(argv: list[str], capsys) -> tuple[int, str]:
    code = main(argv)
    captured = capsys.readouterr()
    assert "error:" not in captured.out, "errors go to stderr"
    return code, captured.err


def assert_one_clear_user_error(code: int, err: str, expected: str, output_dir: Path) -> None:
    """Exit 2, the expected fragment, no traceback, one `error:` block of problems, nothing trained."""
    assert code == 2, err
    assert "Traceback" not in err
    assert expected in err, err
    blocks = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(blocks) == 1, err
    assert_nothing_trained(output_dir)


def assert_nothing_trained(output_dir: Path) -> None:
    written = [p for p in output_dir.rglob("*") if p.name.startswith("checkpoint") or p.suffix == ".safetensors"]
    assert not written, f"a failed run wrote {written}"


def assert_problem_names(err: str, where: str, expected: str) -> None:
    """Some problem line names `where` (an absolute `path:line: `, or `path: ` for a whole file) and says `expected`."""
    lines = [line for line in err.splitlines() if where in line]
    assert any(expected in line for line in lines), f"no problem naming {where!r} says {expected!r}:\n{err}"


# --- BAD_CONFIGS -----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BadConfig:
    """A config that must be refused. It is written to `c.yaml` in the working directory (tmp_path) and given by that
    relative name; `{tmp}` in `expect` stands for the working directory, so messages must name resolved paths."""

    id: str
    expect: str
    change: dict[str, Any] = field(default_factory=dict)  # deep-merged into the base config
    replace: dict[str, Any] = field(default_factory=dict)  # top-level sections replaced wholesale
    drop: tuple[str, ...] = ()  # top-level sections removed
    raw: str | bytes | None = None  # the config file's bytes instead of a generated config
    argv_path: str | None = None  # the path given on the command line instead of the written file
    base: str = "sft"  # sft | dpo | kto
    command: str | None = None  # default: the base method's command
    env: dict[str, str] = field(default_factory=dict)


LORA = {"peft_type": "LORA", "peft_kwargs": {"r": 4, "target_modules": ["q_proj"]}}

BAD_CONFIGS = [
    # the file itself
    BadConfig(
        "yaml-bad-indent",
        raw="method: sft\ntraining_args:\n  learning_rate: 0.1\n   max_steps: 3\n",
        expect="{tmp}/c.yaml: invalid YAML at line 4, column 13: mapping values are not allowed here",
    ),
    BadConfig(
        "yaml-tab-indent",
        raw="method: sft\n\tdata_conf: {}\n",
        expect="invalid YAML at line 2, column 1: found character '\\t' that cannot start any token",
    ),
    BadConfig("yaml-unclosed-bracket", raw="run_conf: {model: x\nsft_args: {}\n", expect="invalid YAML at line 2"),
    BadConfig(
        "yaml-duplicate-key",
        raw="method: sft\nsft_args: {max_seq_length: 64}\nsft_args: {max_seq_length: 128}\n",
        expect="invalid YAML at line 3, column 1: duplicate key 'sft_args' (first on line 2)",
    ),
    BadConfig(
        "yaml-not-utf8", raw=b"method: sft\n# caf\xe9\n", expect="{tmp}/c.yaml: invalid YAML at line 2: not valid UTF-8"
    ),
    BadConfig(
        "yaml-is-a-list", raw="- method: sft\n", expect="top level must be a mapping of config sections, got list"
    ),
    BadConfig("yaml-is-a-string", raw="sft\n", expect="top level must be a mapping of config sections, got str"),
    BadConfig("empty-config-file", raw="", expect="{tmp}/c.yaml: the top level must be a mapping"),
    BadConfig("comments-only-config", raw="# TODO\n", expect="config sections, got empty"),
    BadConfig("config-not-found", argv_path="no/such.yaml", expect="config file not found: {tmp}/no/such.yaml"),
    BadConfig("config-is-a-directory", argv_path=".", expect="{tmp}: is a directory, not a config file"),
    # wrong types
    BadConfig(
        "string-for-int",
        change={"batchsize_conf": {"total_train_batch_size": "eight"}},
        expect="batchsize_conf.total_train_batch_size: must be a valid integer, got 'eight'",
    ),
    BadConfig(
        "fraction-for-int",
        change={"sft_args": {"max_seq_length": 256.5}},
        expect="sft_args.max_seq_length: must be a valid integer, got 256.5",
    ),
    BadConfig(
        "bool-for-int",
        change={"batchsize_conf": {"total_train_batch_size": True}},
        expect="batchsize_conf.total_train_batch_size: must be a number, got true",
    ),
    BadConfig(
        "string-for-bool",
        change={"sft_args": {"train_on_completions_only": "maybe"}},
        expect="sft_args.train_on_completions_only: must be a valid boolean, got 'maybe'",
    ),
    BadConfig(
        "string-for-float-in-training-args",
        change={"training_args": {"learning_rate": "fast"}},
        expect="training_args.learning_rate: must be a valid number, got 'fast'",
    ),
    BadConfig(
        "bool-for-int-in-training-args",
        change={"training_args": {"max_steps": True}},
        expect="training_args.max_steps: must be a number, got true",
    ),
    BadConfig(
        "section-is-a-list", replace={"training_args": ["lr"]}, expect="training_args: must be a valid dictionary"
    ),
    BadConfig(
        "section-is-empty", replace={"data_conf": None}, expect="data_conf: must be a valid dictionary, got null"
    ),
    BadConfig(
        "section-is-a-string", replace={"run_conf": "model"}, expect="run_conf: must be a valid dictionary, got 'model'"
    ),
    # unknown keys, at every level
    BadConfig("unknown-top-level-key", change={"sft_arg": {}}, expect="sft_arg: unknown key; did you mean 'sft_args'?"),
    BadConfig(
        "unknown-sft-args-key",
        change={"sft_args": {"max_seq_len": 64}},
        expect="sft_args.max_seq_len: unknown key; did you mean 'max_seq_length'?",
    ),
    BadConfig(
        "unknown-peft-conf-key",
        replace={"peft_conf": {**LORA, "peft_kwarg": {}}},
        expect="peft_conf.peft_kwarg: unknown key; did you mean 'peft_kwargs'?",
    ),
    BadConfig(
        "unknown-quant-conf-key",
        replace={"peft_conf": LORA, "quant_conf": {"quantization_type": "bits-and-bytes", "load_in_4bits": True}},
        expect="quant_conf.load_in_4bits: unknown key; did you mean 'load_in_4bit'?",
    ),
    BadConfig("unknown-run-conf-key", change={"run_conf": {"modle": "x"}}, expect="run_conf.modle: unknown key"),
    BadConfig(
        "unknown-dataset-key",
        change={"data_conf": {"training_data": {"datasets": [{"path": str(FACTS), "weight": 2}]}}},
        expect="data_conf.training_data.datasets[0].weight: unknown key",
    ),
    BadConfig(
        "unknown-data-input-type",
        change={"data_conf": {"training_data": {"type": "CONCAT"}}},
        expect="data_conf.training_data.type: must be 'CONCATENATION' or 'PRECOMPUTE_WEIGHTED_MIX', got 'CONCAT'",
    ),
    BadConfig(
        "missing-data-input-type",
        change={"data_conf": {"validation_data": {"type": None}}},
        expect="data_conf.validation_data.type: must be 'AUTO_SPLIT', 'CONCATENATION' or 'NONE', got null",
    ),
    BadConfig(
        "unknown-chat-template",
        change={"data_conf": {"chat_template_name": "chatml"}},
        expect="data_conf.chat_template_name: must be 'mistral-with-system', 'chat-ml'",
    ),
    BadConfig("unknown-method", change={"method": "ppo"}, expect="method: 'ppo' is not a method"),
    BadConfig("missing-section", drop=("batchsize_conf",), expect="batchsize_conf: required key is missing"),
    # negative or zero sizes and rates
    BadConfig(
        "zero-max-seq-length",
        change={"sft_args": {"max_seq_length": 0}},
        expect="sft_args.max_seq_length: must be greater than or equal to 1",
    ),
    BadConfig(
        "negative-max-seq-length",
        change={"sft_args": {"max_seq_length": -5}},
        expect="sft_args.max_seq_length: must be greater than or equal to 1",
    ),
    BadConfig(
        "negative-total-batch",
        change={"batchsize_conf": {"total_train_batch_size": -8}},
        expect="batchsize_conf.total_train_batch_size: must be greater than or equal to 1",
    ),
    BadConfig(
        "zero-per-device-batch",
        change={"batchsize_conf": {"max_per_device_train_batch_size": 0}},
        expect="batchsize_conf.max_per_device_train_batch_size: must be greater than or equal to 1",
    ),
    BadConfig(
        "zero-eval-batch",
        change={"batchsize_conf": {"per_device_eval_batch_size": 0}},
        expect="batchsize_conf.per_device_eval_batch_size: must be greater than or equal to 1",
    ),
    BadConfig(
        "negative-learning-rate",
        change={"training_args": {"learning_rate": -0.001}},
        expect="training_args.learning_rate: must be greater than 0, got -0.001",
    ),
    BadConfig(
        "zero-learning-rate",
        change={"training_args": {"learning_rate": 0}},
        expect="training_args.learning_rate: must be greater than 0, got 0",
    ),
    BadConfig(
        "negative-warmup",
        change={"training_args": {"warmup_steps": -3}},
        expect="training_args.warmup_steps: must be greater than or equal to 0, got -3",
    ),
    BadConfig(
        "zero-save-steps",
        change={"training_args": {"save_strategy": "steps", "save_steps": 0}},
        expect="training_args.save_steps: must be greater than 0, got 0",
    ),
    BadConfig(
        "zero-epochs-no-max-steps",
        change={"training_args": {"num_train_epochs": 0, "max_steps": -1}},
        expect="training_args.num_train_epochs: must be greater than 0 (or set max_steps), got 0",
    ),
    BadConfig(
        "negative-epochs-override",
        change={"overrides": {"num_train_epochs": -1}},
        expect="overrides.num_train_epochs: must be greater than 0",
    ),
    BadConfig(
        "zero-lr-multiplier",
        change={"overrides": {"lr_multiplier": 0}},
        expect="overrides.lr_multiplier: must be greater than 0",
    ),
    BadConfig(
        "zero-lora-rank",
        replace={"peft_conf": {"peft_type": "LORA", "peft_kwargs": {"r": 0}}},
        expect="peft_conf.peft_kwargs.r: must be greater than or equal to 1, got 0",
    ),
    BadConfig(
        "empty-dataset-list",
        change={"data_conf": {"training_data": {"datasets": []}}},
        expect="data_conf.training_data.datasets: must list at least 1 item(s), got 0",
    ),
    BadConfig(
        "auto-split-ratio-above-one",
        change={"data_conf": {"validation_data": {"type": "AUTO_SPLIT", "ratio": 1.5}}},
        expect="data_conf.validation_data.ratio: must be less than 1",
    ),
    BadConfig(
        "all-sampling-weights-zero",
        change={
            "data_conf": {
                "training_data": {
                    "type": "PRECOMPUTE_WEIGHTED_MIX",
                    "datasets": [{"path": str(FACTS), "sampling_weight": 0}],
                }
            }
        },
        expect="data_conf.training_data: all sampling weights are zero",
    ),
    # impossible batch arithmetic (for this launch's number of processes)
    BadConfig(
        "batch-not-divisible-by-processes",
        env={"WORLD_SIZE": "3"},
        expect="total_train_batch_size=8 is not divisible by the number of processes (3)",
    ),
    BadConfig(
        "batch-smaller-than-processes",
        change={"batchsize_conf": {"total_train_batch_size": 2}},
        env={"WORLD_SIZE": "4"},
        expect="total_train_batch_size=2 is not divisible by the number of processes (4)",
    ),
    BadConfig(
        "batch-keys-in-training-args",
        change={"training_args": {"per_device_train_batch_size": 4}},
        expect="training_args.per_device_train_batch_size: set by the engine from batchsize_conf",
    ),
    # contradictory options
    BadConfig(
        "pretrained-peft-without-path",
        replace={"peft_conf": {"peft_type": "PRETRAINED_PEFT"}},
        expect="peft_conf.name_or_path: required key is missing",
    ),
    BadConfig(
        "peft-without-type",
        replace={"peft_conf": {"task_type": "CAUSAL_LM", "peft_kwargs": {"r": 4}}},
        expect="peft_conf: peft_type is required",
    ),
    BadConfig(
        "quantization-with-full-finetuning",
        replace={"quant_conf": {"quantization_type": "bits-and-bytes", "load_in_4bit": True}},
        expect="quant_conf: a quantized model cannot be fully fine-tuned (peft_type NO_PEFT)",
    ),
    BadConfig(
        "4bit-and-8bit",
        replace={
            "peft_conf": LORA,
            "quant_conf": {"quantization_type": "bits-and-bytes", "load_in_4bit": True, "load_in_8bit": True},
        },
        expect="quant_conf: load_in_4bit and load_in_8bit are both true; choose one",
    ),
    BadConfig(
        "bits-and-bytes-without-bit-width",
        replace={"peft_conf": LORA, "quant_conf": {"quantization_type": "bits-and-bytes"}},
        expect="quant_conf: bits-and-bytes needs load_in_4bit: true or load_in_8bit: true",
    ),
    BadConfig(
        "unknown-quantization-type",
        replace={"peft_conf": LORA, "quant_conf": {"quantization_type": "gptq"}},
        expect="quant_conf: quantization_type must be 'bits-and-bytes' or 'no-quantization'",
    ),
    BadConfig(
        "evaluation-without-validation-data",
        change={"training_args": {"load_best_model_at_end": True}},
        expect="training_args.load_best_model_at_end: True needs validation data",
    ),
    BadConfig(
        "dpo-config-run-with-sft",
        base="dpo",
        command="sft",
        expect="method: this config is for `dpo`; run it with `finetuning dpo c.yaml`",
    ),
    BadConfig(
        "kto-config-run-with-sft",
        base="kto",
        command="sft",
        expect="method: this config is for `kto`; run it with `finetuning dpo",
    ),
    BadConfig(
        "sft-config-run-with-dpo",
        command="dpo",
        expect="method: this config is for `sft`; run it with `finetuning sft",
    ),
    BadConfig("sft-args-in-a-dpo-config", base="dpo", change={"sft_args": {}}, expect="sft_args: unknown key"),
    BadConfig(
        "dpo-unknown-loss-type",
        base="dpo",
        change={"training_args": {"loss_type": "sigmod"}},
        expect="training_args.loss_type: unknown value 'sigmod'; did you mean 'sigmoid'?",
    ),
    BadConfig(
        "kto-unknown-loss-type",
        base="kto",
        change={"training_args": {"loss_type": "kto_pair"}},
        expect="training_args.loss_type: unknown value 'kto_pair'",
    ),
    BadConfig(
        "dpo-negative-max-prompt-length",
        base="dpo",
        change={"training_args": {"max_prompt_length": -1}},
        expect="training_args.max_prompt_length: must be a positive integer or null",
    ),
    BadConfig(
        "dpo-zero-max-length",
        base="dpo",
        change={"training_args": {"max_length": 0}},
        expect="training_args.max_length: must be greater than or equal to 1, got 0",
    ),
    # files the config names (relative paths resolve against the working directory; messages name them absolute)
    BadConfig(
        "missing-training-file",
        change={"data_conf": {"training_data": {"datasets": [{"path": "data/train.jsonl"}]}}},
        expect="data_conf.training_data.datasets[0].path: {tmp}/data/train.jsonl: file not found",
    ),
    BadConfig(
        "missing-validation-file",
        change={"data_conf": {"validation_data": {"type": "CONCATENATION", "datasets": [{"path": "valid.jsonl"}]}}},
        expect="data_conf.validation_data.datasets[0].path: {tmp}/valid.jsonl: file not found",
    ),
    BadConfig(
        "dataset-path-is-a-directory",
        change={"data_conf": {"training_data": {"datasets": [{"path": "."}]}}},
        expect="data_conf.training_data.datasets[0].path: {tmp}: is a directory; a dataset path names a JSONL file",
    ),
    BadConfig(
        "missing-dpo-file",
        base="dpo",
        change={"data_conf": {"training_data": {"datasets": [{"path": "pairs.jsonl"}]}}},
        expect="data_conf.training_data.datasets[0].path: {tmp}/pairs.jsonl: file not found",
    ),
    BadConfig(
        "missing-tokenizer-dir",
        change={"run_conf": {"tokenizer": "./no/tokenizer"}},
        expect="run_conf.tokenizer: {tmp}/no/tokenizer: not found",
    ),
    BadConfig(
        "missing-resume-checkpoint",
        change={"run_conf": {"resume_from_checkpoint": "out/checkpoint-7"}},
        expect="run_conf.resume_from_checkpoint: {tmp}/out/checkpoint-7",
    ),
]


def write_bad_config(case: BadConfig, tmp_path: Path, model_dir: Path) -> str:
    path = tmp_path / "c.yaml"
    if case.raw is not None:
        path.write_bytes(case.raw if isinstance(case.raw, bytes) else case.raw.encode())
    else:
        config = {**deep_update(base_config(tmp_path, model_dir, case.base), case.change), **case.replace}
        write_yaml(path, {key: value for key, value in config.items() if key not in case.drop})
    return case.argv_path or path.name  # relative: the test runs in tmp_path


@pytest.mark.parametrize("case", BAD_CONFIGS, ids=[case.id for case in BAD_CONFIGS])
def test_bad_config(case: BadConfig, tmp_path, tiny_model_dir, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for key, value in case.env.items():
        monkeypatch.setenv(key, value)
    config = write_bad_config(case, tmp_path, tiny_model_dir)
    code, err = run_in_process([case.command or COMMAND[case.base], config], capsys)
    assert_one_clear_user_error(code, err, case.expect.replace("{tmp}", str(tmp_path)), tmp_path / "out")


# --- BAD_DATA --------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BadData:
    """A data file that must be refused: `content` is rows (one JSON line each) or the file's text / bytes. The
    message must name the file's absolute path and `line` (None: a problem with the whole file)."""

    id: str
    content: list | str | bytes
    line: int | None
    expect: str
    base: str = "sft"
    change: dict[str, Any] = field(default_factory=dict)
    command: str | None = None  # default: the base method's command
    validation: bool = False  # the file is the validation data (the training data is good)
    strict_tokenizer: bool = False  # run_conf.tokenizer: a copy of the tiny tokenizer whose template needs alternation


MISTRAL = {"data_conf": {"chat_template_name": "mistral-with-system"}}
ALTERNATE = "chat template needs user and assistant turns to alternate"

BAD_DATA = [
    # not JSON, or not rows
    BadData("invalid-json", [GOOD, '{"messages": [}'], 2, "invalid JSON: Expecting value (column 15)"),
    BadData("truncated-last-line", json.dumps(GOOD) + '\n{"messages": [{"role": "user"', 2, "invalid JSON"),
    BadData(
        "python-dict-not-json",
        json.dumps(GOOD) + "\n" + repr(GOOD) + "\n",
        2,
        "invalid JSON: Expecting property name enclosed in double quotes",
    ),
    BadData("trailing-garbage", json.dumps(GOOD) + " ,\n", 1, "invalid JSON: Extra data"),
    BadData(
        "pretty-printed-object", json.dumps(GOOD, indent=2), 1, "the file is one JSON object spread over several lines"
    ),
    BadData("row-is-a-string", ['"hello"'], 1, "each row must be a JSON object, got string"),
    BadData("row-is-an-array", [GOOD, [GOOD]], 2, "each row must be a JSON object, got array"),
    BadData("json-array-of-numbers", "[\n  1,\n  2\n]\n", 3, "each row must be a JSON object, got number"),
    BadData(
        "json-array-bad-element",
        "[\n"
        + json.dumps(GOOD)
        + ",\n"
        + json.dumps({"messages": [user(), {"role": "robot", "content": "x"}]})
        + "\n]",
        3,
        "messages[1].role is 'robot'",
    ),
    BadData(
        "json-array-never-closed",
        "[\n" + json.dumps(GOOD) + ",\n" + json.dumps(GOOD) + "\n",
        3,
        "invalid JSON: the array is never closed with ']'",
    ),
    # empty, unreadable, not UTF-8
    BadData("zero-byte-file", b"", None, "no rows: the file is empty (0 bytes)"),
    BadData("whitespace-only-file", "\n  \n\t\n", None, "no rows: the file holds only blank lines"),
    BadData("empty-json-array", "[]\n", None, "no rows: the file holds an empty JSON array"),
    BadData(
        "not-utf8",
        json.dumps(GOOD).encode() + b'\n{"messages": "caf\xe9"}\n',
        2,
        "not valid UTF-8 (byte 18 of the line)",
    ),
    BadData("utf16-file", (json.dumps(GOOD) + "\n").encode("utf-16"), 1, "not valid UTF-8 (byte 1 of the line)"),
    # wrong shape of a row or a message
    BadData(
        "misspelled-messages-key", [{"mesages": GOOD["messages"]}], 1, "missing 'messages' (keys found: ['mesages'])"
    ),
    BadData("messages-not-a-list", [{"messages": "hello"}], 1, "'messages' must be a non-empty list"),
    BadData("empty-messages", [GOOD, {"messages": []}], 2, "'messages' must be a non-empty list"),
    BadData("message-not-an-object", [{"messages": ["hello"]}], 1, "messages[0] must be an object with 'role'"),
    BadData(
        "unknown-role",
        [{"messages": [user(), {"role": "bot", "content": "x"}]}],
        1,
        "messages[1].role is 'bot'; expected one of system, user, assistant",
    ),
    BadData(
        "misspelled-role",
        [{"messages": [user(), {"role": "assitant", "content": "x"}]}],
        1,
        "messages[1].role is 'assitant'; did you mean 'assistant'?",
    ),
    BadData(
        "capitalised-role",
        [{"messages": [{"role": "User", "content": "q"}, assistant()]}],
        1,
        "messages[0].role is 'User'; did you mean 'user'?",
    ),
    BadData("missing-role", [{"messages": [{"content": "q"}, assistant()]}], 1, "messages[0].role is None"),
    BadData(
        "content-is-a-list",
        [{"messages": [user(), {"role": "assistant", "content": [{"type": "text", "text": "a"}]}]}],
        1,
        "messages[1].content must be a string, got array",
    ),
    BadData(
        "content-is-null",
        [{"messages": [user(), {"role": "assistant", "content": None}]}],
        1,
        "messages[1].content must be a string, got null",
    ),
    BadData(
        "empty-assistant-content",
        [GOOD, {"messages": [user(), assistant("")]}],
        2,
        "messages[1].content is empty; assistant messages need text",
    ),
    BadData(
        "whitespace-user-content",
        [{"messages": [user("  \n"), assistant()]}],
        1,
        "messages[0].content is empty; user messages need text",
    ),
    BadData(
        "unknown-message-key",
        [{"messages": [user(), {"role": "assistant", "content": "a", "name": "bot"}]}],
        1,
        "messages[1] has unknown keys ['name']",
    ),
    BadData(
        "no-assistant-turn-under-completions-only",
        [GOOD, {"messages": [system(), user()]}],
        2,
        "'messages' has no assistant message, so there is nothing to train on",
    ),
    BadData("dpo-rows-given-to-sft", [PAIR], 1, "missing 'messages' (keys found: ['chosen_messages'"),
    # role orders the chat template cannot render faithfully
    BadData(
        "two-user-turns-in-a-row-mistral",
        [GOOD, {"messages": [user("a"), user("b"), assistant()]}],
        2,
        f"messages[1] has role 'user' where 'assistant' must come: the 'mistral-with-system' {ALTERNATE}",
        change=MISTRAL,
    ),
    BadData(
        "two-assistant-turns-in-a-row-mistral",
        [{"messages": [user(), assistant("a"), assistant("b")]}],
        1,
        "messages[2] has role 'assistant' where 'user' must come",
        change=MISTRAL,
    ),
    BadData(
        "starts-with-assistant-mistral",
        [{"messages": [assistant(), user(), assistant()]}],
        1,
        "messages[0] has role 'assistant' where 'user' must come",
        change=MISTRAL,
    ),
    BadData(
        "system-not-first-mistral",
        [{"messages": [user(), assistant(), system(), user(), assistant()]}],
        1,
        "messages[2] has role 'system' where 'user' must come",
        change=MISTRAL,
    ),
    BadData(
        "non-alternating-found-by-validate",
        [GOOD, GOOD, {"messages": [user("a"), user("b"), assistant()]}],
        3,
        ALTERNATE,
        change=MISTRAL,
        command="validate",
    ),
    BadData(
        "tokenizer-template-refuses-role-order",
        [GOOD, {"messages": [user("a"), user("b"), assistant()]}],
        2,
        "the chat template refuses the roles ['user', 'user', 'assistant']: Conversation roles must alternate",
        change={"data_conf": {"chat_template_name": "keep-original"}},
        strict_tokenizer=True,
    ),
    # validation data is checked like training data
    BadData("bad-validation-row", [GOOD, {"messages": [user()]}], 2, "no assistant message", validation=True),
    BadData("empty-validation-file", b"", None, "no rows: the file is empty (0 bytes)", validation=True),
    # preference data
    BadData(
        "dpo-missing-rejected",
        [PAIR, {key: PAIR[key] for key in ("prompt_messages", "chosen_messages")}],
        2,
        "missing ['rejected_messages'] (a DPO row has prompt_messages, chosen_messages, rejected_messages",
        base="dpo",
    ),
    BadData(
        "dpo-missing-chosen-and-rejected",
        [{"prompt_messages": [user()]}],
        1,
        "missing ['chosen_messages', 'rejected_messages']",
        base="dpo",
    ),
    BadData(
        "dpo-chosen-equals-rejected",
        [PAIR, dict(PAIR, rejected_messages=PAIR["chosen_messages"])],
        2,
        "'chosen_messages' and 'rejected_messages' are identical, so the pair prefers nothing",
        base="dpo",
    ),
    BadData(
        "dpo-chosen-starts-with-user",
        [dict(PAIR, chosen_messages=[user(), assistant()])],
        1,
        "'chosen_messages' must start with an assistant message",
        base="dpo",
    ),
    BadData(
        "dpo-empty-rejected-content",
        [dict(PAIR, rejected_messages=[assistant(" ")])],
        1,
        "rejected_messages[0].content is empty",
        base="dpo",
    ),
    BadData(
        "dpo-prompt-ends-with-assistant-mistral",
        [dict(PAIR, prompt_messages=[user(), assistant("Hm.")])],
        1,
        "'prompt_messages' must end with a user message for the 'mistral-with-system' chat template",
        base="dpo",
        change=MISTRAL,
    ),
    BadData("sft-rows-given-to-dpo", [GOOD], 1, "missing ['prompt_messages', 'chosen_messages'", base="dpo"),
    BadData(
        "kto-label-is-a-string",
        [UNPAIRED, dict(UNPAIRED, label="true")],
        2,
        "'label' must be true (desirable) or false (undesirable), got 'true'",
        base="kto",
    ),
    BadData(
        "kto-label-is-a-number",
        [dict(UNPAIRED, label=1)],
        1,
        "'label' must be true (desirable) or false (undesirable), got 1",
        base="kto",
    ),
    BadData(
        "kto-missing-label",
        [{"prompt_messages": [user()], "completion_messages": [assistant()]}],
        1,
        "missing ['label']",
        base="kto",
    ),
]


@pytest.fixture(scope="session")
def strict_tokenizer_dir(tiny_model_dir, tmp_path_factory) -> Path:
    """The tiny tokenizer with a template that refuses non-alternating turns, as Llama-2 / Mistral templates do."""
    directory = tmp_path_factory.mktemp("strict-tokenizer")
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(tiny_model_dir / name, directory / name)
    (directory / "chat_template.jinja").write_text(
        "{{ bos_token }}{% for message in messages %}"
        "{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
        "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}"
        "{{ '### ' + message['role'] + ':\n' + message['content'] + eos_token + '\n' }}{% endfor %}"
        "{% if add_generation_prompt %}{{ '### assistant:\n' }}{% endif %}"
    )
    return directory


def write_data(path: Path, content: list | str | bytes) -> Path:
    if isinstance(content, list):
        path.write_text("".join((row if isinstance(row, str) else json.dumps(row)) + "\n" for row in content))
    else:
        path.write_bytes(content if isinstance(content, bytes) else content.encode())
    return path


def bad_data_config(case: BadData, tmp_path: Path, model_dir: Path, strict_tokenizer: Path | None) -> Path:
    bad = write_data(tmp_path / "data.jsonl", case.content)
    if case.validation:
        good = write_jsonl(tmp_path / "good.jsonl", [GOOD_ROW[case.base]] * 4)
        config = base_config(tmp_path, model_dir, case.base, data=good)
        config["data_conf"]["validation_data"] = {"type": "CONCATENATION", "datasets": [{"path": str(bad)}]}
    else:
        config = base_config(tmp_path, model_dir, case.base, data=bad)
    config = deep_update(config, case.change)
    if case.strict_tokenizer:
        config["run_conf"]["tokenizer"] = str(strict_tokenizer)
    return write_yaml(tmp_path / "c.yaml", config)


@pytest.mark.parametrize("case", BAD_DATA, ids=[case.id for case in BAD_DATA])
def test_bad_data(case: BadData, tmp_path, tiny_model_dir, strict_tokenizer_dir, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    config = bad_data_config(case, tmp_path, tiny_model_dir, strict_tokenizer_dir)
    code, err = run_in_process([case.command or COMMAND[case.base], str(config)], capsys)
    assert_one_clear_user_error(code, err, case.expect, tmp_path / "out")
    data = (tmp_path / "data.jsonl").resolve()
    assert_problem_names(err, f"{data}:{case.line}: " if case.line is not None else f"{data}: ", case.expect)


# --- process level -------------------------------------------------------------------------------------------------


PROCESS_CASES = ("yaml-duplicate-key", "not-utf8", "tokenizer-template-refuses-role-order")


@pytest.mark.slow
def test_no_traceback_at_process_level(tmp_path, tiny_model_dir, strict_tokenizer_dir):
    """A bad config, a non-UTF-8 data file and a template that refuses the data, each in a real `finetuning`
    process (run side by side: each start imports torch): exit 2, the message, no traceback on either stream."""
    started = {}
    for case_id in PROCESS_CASES:
        workdir = tmp_path / case_id
        workdir.mkdir()
        config_case = next((case for case in BAD_CONFIGS if case.id == case_id), None)
        if config_case is not None:
            config = write_bad_config(config_case, workdir, tiny_model_dir)
            command, expect = COMMAND[config_case.base], config_case.expect.replace("{tmp}", str(workdir))
        else:
            case = next(case for case in BAD_DATA if case.id == case_id)
            config = str(bad_data_config(case, workdir, tiny_model_dir, strict_tokenizer_dir))
            command, expect = COMMAND[case.base], f"{workdir / 'data.jsonl'}:{case.line}: {case.expect}"
        process = subprocess.Popen(
            [sys.executable, "-m", "finetuning.cli", command, config],
            cwd=workdir,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        started[case_id] = (process, expect, workdir)
    for case_id, (process, expect, workdir) in started.items():
        out, err = process.communicate(timeout=180)
        assert process.returncode == 2, f"{case_id}: {err}"
        assert "Traceback" not in err and "Traceback" not in out, f"{case_id}: {err}"
        assert expect in err, f"{case_id}: {err}"
        assert_nothing_trained(workdir / "out")


# --- examples dropped on purpose ---------------------------------------------------------------------------------


@pytest.mark.slow
def test_too_long_examples_are_counted_in_the_run_summary(tmp_path, tiny_model_dir, capsys, caplog):
    """Dropping is deliberate, and never silent: the warning, summary.md and the printed table all give the count."""
    config = sft_config(
        tmp_path,
        tiny_model_dir,
        sft_args={"max_seq_length": 30},
        training_args={"max_steps": 1},
        data_conf={"validation_data": {"type": "CONCATENATION", "datasets": [{"path": str(FACTS)}]}},
    )
    assert main(["sft", str(write_yaml(tmp_path / "c.yaml", config))]) == 0
    counts = {}
    for what in ("training", "validation"):
        warning = next(r.getMessage() for r in caplog.records if r.getMessage().startswith(f"{what} data: dropped"))
        counts[what] = int(warning.split()[3])  # "training data: dropped N of M examples longer than ..."
        assert "of 100 examples longer than sft_args.max_seq_length=30 tokens" in warning
    assert 0 < counts["training"] < 100 and counts["validation"] == counts["training"]
    dropped = f"training: {counts['training']}, validation: {counts['validation']}"
    summary = (tmp_path / "out" / "summary.md").read_text()
    assert f"| dropped as too long | {dropped} |" in summary
    assert f"| training examples | {100 - counts['training']} |" in summary
    printed = capsys.readouterr().out
    assert "dropped as too long" in printed and dropped in printed


@pytest.mark.parametrize(
    ("base", "change", "expect"),
    [
        (
            "sft",
            {"sft_args": {"max_seq_length": 8}},
            "sft_args.max_seq_length: all 100 training examples are longer than 8 tokens, so none is left",
        ),
        (
            "sft",
            {"data_conf": {"validation_data": {"type": "CONCATENATION", "datasets": [{"path": "long.jsonl"}]}}},
            "sft_args.max_seq_length: all 2 validation examples are longer than 256 tokens, so none is left",
        ),
        (
            "dpo",
            {"training_args": {"max_length": 8}},
            "training_args.max_length: all 60 training examples are longer than 8 tokens, so none is left",
        ),
    ],
    ids=["sft-training", "sft-validation", "dpo-training"],
)
def test_everything_too_long_is_an_error_not_a_run_on_nothing(
    base, change, expect, tmp_path, tiny_model_dir, capsys, monkeypatch
):
    monkeypatch.chdir(tmp_path)
    write_jsonl(tmp_path / "long.jsonl", [{"messages": [user("word " * 400), assistant("word " * 400)]}] * 2)
    config = deep_update(base_config(tmp_path, tiny_model_dir, base), change)
    code, err = run_in_process([COMMAND[base], str(write_yaml(tmp_path / "c.yaml", config))], capsys)
    assert_one_clear_user_error(code, err, expect, tmp_path / "out")


# --- inputs that look odd but are fine -----------------------------------------------------------------------------


def test_byte_order_marks_and_row_metadata_are_accepted(tmp_path, tiny_model_dir, capsys):
    """A BOM (Windows editors) is not garbage, and keys beside `messages` (ids, sources) are metadata: both pass."""
    data = tmp_path / "bom.jsonl"
    data.write_bytes(b"\xef\xbb\xbf" + "".join(json.dumps({**GOOD, "id": i}) + "\n" for i in range(4)).encode())
    config = tmp_path / "c.yaml"
    config.write_bytes(b"\xef\xbb\xbf" + yaml.safe_dump(sft_config(tmp_path, tiny_model_dir, data=data)).encode())
    assert main(["validate", str(config)]) == 0, capsys.readouterr().err
    assert "data OK: 1 file(s)" in capsys.readouterr().out
