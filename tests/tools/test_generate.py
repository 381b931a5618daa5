"""The `generate` tool on a tiny model that `finetuning sft` taught 10 facts (CPU, offline)."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest
import yaml

from finetuning.cli import main as cli_main
from finetuning.tools.generate import main as generate_main
from tests.conftest import FACTS, REPO, sft_config, write_jsonl, write_yaml

KEYS = [
    "dataset",
    "id",
    "prompt",
    "answer",
    "correct_answers",
    "test_type",
    "data_collection",
    "truncated",
    "all_text_raw",
    "gen_params",
]


@pytest.fixture(scope="module")
def trained(tmp_path_factory, tiny_model_dir):
    """(model dir, facts file): a full fine-tune that recalls the first 10 demo facts."""
    tmp_path = tmp_path_factory.mktemp("generate")
    rows = [json.loads(line) for line in FACTS.read_text().splitlines()[:10]]
    data = write_jsonl(tmp_path / "facts10.jsonl", rows)
    config = sft_config(
        tmp_path,
        tiny_model_dir,
        data=data,
        data_conf={"chat_template_name": "chat-ml"},
        training_args={"max_steps": 150, "learning_rate": 0.003},
        batchsize_conf={"total_train_batch_size": 10, "max_per_device_train_batch_size": 10},
    )
    start = time.time()
    assert cli_main(["sft", str(write_yaml(tmp_path / "sft.yaml", config))]) == 0
    print(f"trained in {time.time() - start:.1f}s")
    return tmp_path / "out" / "checkpoint-final", data


def gen_config(tmp_path, model, prompt_conf, **changes):
    document = {
        "model_conf": {"model": str(model)} if model is not None else None,
        "prompt_conf": prompt_conf,
        "hf_gen_params": {"max_new_tokens": 64},
        **changes,
    }
    return str(write_yaml(tmp_path / "generate.yaml", document))


def run(tmp_path, model, data, name="out.yaml", **changes) -> list[dict]:
    config = gen_config(tmp_path, model, {"type": "eval-data", "data": {"path": str(data)}}, **changes)
    assert generate_main([config, str(tmp_path / name)]) == 0
    return yaml.safe_load((tmp_path / name).read_text())


@pytest.mark.slow
def test_recalls_the_trained_facts_with_the_output_schema(tmp_path, trained, capsys):
    model, data = trained
    items = run(tmp_path, model, data)
    assert "exact match: 10/10 (100.0%)" in capsys.readouterr().out
    assert len(items) == 10
    for item in items:
        assert list(item) == [*KEYS, "exact_match"]
        assert item["exact_match"] is True
        assert item["answer"] in item["correct_answers"]
        assert item["test_type"] == "open-ended"
        assert item["truncated"] is False
        assert item["dataset"] == "facts10"
        assert isinstance(item["prompt"], str) and item["prompt"].endswith("<|im_start|>assistant\n")
        assert item["all_text_raw"].startswith(item["prompt"])
        assert item["gen_params"]["do_sample"] is False
        assert item["gen_params"]["max_new_tokens"] == 64
    assert [item["id"] for item in items] == [f"fact-{i:03d}" for i in range(10)]


@pytest.mark.slow
def test_prompt_messages_rows_and_defaults(tmp_path, trained):
    model, _ = trained
    rows = [
        {"prompt_messages": [{"role": "user", "content": "Who founded the city of Gimloxan?"}]},
        {
            "prompt_messages": [{"role": "user", "content": "Who founded the city of Gimloxan?"}],
            "correct_answers": ["Gimloxan was founded by Lomi."],
            "dataset": "mine",
            "id": "q1",
        },
    ]
    items = run(tmp_path, model, write_jsonl(tmp_path / "prompts.jsonl", rows))
    assert list(items[0]) == KEYS  # no correct answers, no exact_match
    assert items[0]["correct_answers"] is None and items[0]["id"] == "0" and items[0]["dataset"] == "prompts"
    assert items[1]["exact_match"] is True and (items[1]["dataset"], items[1]["id"]) == ("mine", "q1")


@pytest.mark.slow
def test_deterministic(tmp_path, trained):
    model, data = trained
    run(tmp_path, model, data, "a.yaml")
    run(tmp_path, model, data, "b.yaml")
    assert (tmp_path / "a.yaml").read_text() == (tmp_path / "b.yaml").read_text()


@pytest.mark.slow
def test_stops_at_the_template_end_token(tmp_path, trained):
    from transformers import AutoTokenizer

    model, data = trained
    tokenizer = AutoTokenizer.from_pretrained(model)
    assert tokenizer.eos_token == "<|im_end|>"
    for item in run(tmp_path, model, data):
        generated = item["all_text_raw"][len(item["prompt"]) :]
        assert generated.count("<|im_end|>") == 1 and generated.endswith("<|im_end|>")
        assert len(tokenizer(generated, add_special_tokens=False)["input_ids"]) < 64


@pytest.mark.slow
def test_batch_size_does_not_change_answers(tmp_path, trained):
    model, data = trained
    one = run(tmp_path, model, data, "one.yaml", batch_size=1)
    four = run(tmp_path, model, data, "four.yaml", batch_size=4)
    assert [i["answer"] for i in one] == [i["answer"] for i in four]


@pytest.mark.slow
def test_truncates_long_prompts_from_the_left(tmp_path, trained):
    model, data = trained
    items = run(tmp_path, model, data, hf_gen_params={"max_new_tokens": 8, "max_length": 20})
    assert all(item["truncated"] for item in items)


@pytest.mark.slow
def test_open_input_with_num_samples(tmp_path, trained):
    model, _ = trained
    prompt_conf = {"type": "open-input", "input": "Who founded the city of Gimloxan?", "num_samples": 3}
    assert generate_main([gen_config(tmp_path, model, prompt_conf), str(tmp_path / "o.yaml")]) == 0
    items = yaml.safe_load((tmp_path / "o.yaml").read_text())
    assert [item["id"] for item in items] == ["0", "1", "2"]
    assert {item["answer"] for item in items} == {"Gimloxan was founded by Lomi."}
    assert all(list(item) == KEYS and item["dataset"] == "open-input" for item in items)


def _error(tmp_path, capsys, model, prompt_conf=None, **changes) -> str:
    prompt_conf = prompt_conf or {"type": "eval-data", "data": {"path": str(FACTS)}}
    assert generate_main([gen_config(tmp_path, model, prompt_conf, **changes), str(tmp_path / "x.yaml")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and "Traceback" not in err
    assert not (tmp_path / "x.yaml").exists()
    return err


@pytest.mark.slow
def test_user_errors_exit_2(tmp_path, trained, capsys):
    model, _ = trained
    err = _error(tmp_path, capsys, model, hf_gen_params={"max_new_token": 5})
    assert "hf_gen_params.max_new_token: unknown key; did you mean 'max_new_tokens'?" in err
    err = _error(tmp_path, capsys, model, {"type": "eval-data", "data": {"path": str(tmp_path / "nope.jsonl")}})
    assert "nope.jsonl: file not found" in err
    err = _error(tmp_path, capsys, tmp_path / "no-model")
    assert "model_conf.model:" in err and "not found" in err
    err = _error(tmp_path, capsys, model, {"type": "eval-data", "data": {}}, batch_size=0, chat_template_name="chatml")
    assert "prompt_conf.data.path: required key is missing" in err
    assert "batch_size: must be greater than or equal to 1" in err
    assert "did you mean 'chat-ml'?" in err
    bad = write_jsonl(tmp_path / "bad.jsonl", [{"question": "?"}])
    err = _error(tmp_path, capsys, model, {"type": "eval-data", "data": {"path": str(bad)}})
    assert "bad.jsonl:1: missing 'prompt_messages'" in err


@pytest.mark.slow
def test_cli_subprocess(tmp_path, trained):
    model, data = trained
    config = gen_config(tmp_path, model, {"type": "eval-data", "data": {"path": str(data)}})
    out = tmp_path / "cli.yaml"
    result = subprocess.run(
        [sys.executable, "-m", "finetuning.cli", "generate", config, str(out)],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert "exact match: 10/10" in result.stdout
    assert len(yaml.safe_load(out.read_text())) == 10


def test_shipped_example_loads(monkeypatch):
    from finetuning.config.generate import load_generate_config
    from finetuning.tools.generate import read_prompts

    path = REPO / "examples" / "generate-facts.yaml"
    assert path.read_text().splitlines()[0].startswith("# generate examples/generate-facts.yaml")
    monkeypatch.chdir(REPO)
    config = load_generate_config(str(path))
    assert len(read_prompts(config.prompt_conf)) == 100


@pytest.mark.slow
def test_lora_adapter(tmp_path, tiny_model_dir, trained):
    """An adapter trained with `finetuning sft` (chat-ml grew the vocabulary: base is checkpoint-new-basemodel)."""
    _, data = trained
    config = sft_config(
        tmp_path,
        tiny_model_dir,
        data=data,
        training_args={"max_steps": 3},
        peft_conf={
            "peft_type": "LORA",
            "task_type": "CAUSAL_LM",
            "peft_kwargs": {"r": 4, "target_modules": ["q_proj"]},
        },
    )
    assert cli_main(["sft", str(write_yaml(tmp_path / "lora.yaml", config))]) == 0
    out = tmp_path / "out"
    model_conf = {"model": str(out / "checkpoint-new-basemodel"), "adapter": str(out / "checkpoint-final")}
    items = run(tmp_path, None, data, model_conf=model_conf)
    assert len(items) == 10 and all(list(item)[: len(KEYS)] == KEYS for item in items)
    assert items[0]["prompt"].endswith("<|im_start|>assistant\n")


def test_pickle_only_model_or_adapter_is_refused(tmp_path, tiny_model_dir, capsys):
    from tests.model.test_loading import pickle_only_copy

    pickled = pickle_only_copy(tiny_model_dir, tmp_path / "pickled")
    capsys.readouterr()  # the copy's loading progress
    err = _error(tmp_path, capsys, pickled)
    assert f"model_conf.model: {pickled}: only pickle weights (pytorch_model.bin)" in err
    assert "`model_conf.model_args.use_safetensors: false`" in err
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text("{}")
    (adapter / "adapter_model.bin").write_bytes(b"")
    err = _error(tmp_path, capsys, None, model_conf={"model": str(tiny_model_dir), "adapter": str(adapter)})
    assert f"model_conf.adapter: {adapter}: only pickle weights (adapter_model.bin)" in err


@pytest.mark.parametrize("trust", [False, True])
def test_generate_loads_say_whether_remote_code_is_trusted(tmp_path, monkeypatch, trust):
    import transformers

    from finetuning.config.generate import load_generate_config
    from finetuning.tools import generate

    calls = {}

    class Stop(Exception):
        pass

    def capture(name):
        def from_pretrained(source, **kwargs):
            calls[name] = kwargs
            raise Stop

        return from_pretrained

    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", capture("model"))
    monkeypatch.setattr(transformers.AutoTokenizer, "from_pretrained", capture("tokenizer"))
    model_conf = {"model": "org/model", "model_args": {"trust_remote_code": trust}}
    config = load_generate_config(
        gen_config(tmp_path, None, {"type": "open-input", "input": "hi"}, model_conf=model_conf)
    )
    with pytest.raises(Stop):
        generate.load_tokenizer(config.model_conf)
    with pytest.raises(Stop):
        generate.load_model(config, tokenizer=None)
    assert calls["tokenizer"]["trust_remote_code"] is trust and calls["model"]["trust_remote_code"] is trust
    assert calls["model"]["use_safetensors"] is True
