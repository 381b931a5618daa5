"""Configs as the Silogen engine's users write them: the subcommand decides the method, `run_conf.determinism`,
TRL-style rows, and a run's own resolved `finetuning_config.yaml` fed back from another directory."""

from __future__ import annotations

import pytest
import torch
import yaml

from finetuning.cli import main, version_line
from finetuning.config import DPOExperimentConfig, dump_resolved_config, load_any_config
from tests.conftest import REPO, sft_config, write_jsonl, write_yaml

PAIRS = REPO / "examples" / "data" / "preferences.jsonl"


def silogen_dpo_config(tmp_path, model_dir, data=PAIRS) -> dict:
    """A DPO config as Silogen's tests write it: no `method:` key, DPO options in training_args."""
    config = sft_config(tmp_path, model_dir, data=data, training_args={"beta": 0.2, "loss_type": "sigmoid"})
    del config["method"], config["sft_args"]
    return config


@pytest.fixture(autouse=True)
def _deterministic_algorithms_off():
    """A run with `determinism` leaves torch's switch on until the run's end restores it: never let it leak into
    later tests."""
    yield
    torch.use_deterministic_algorithms(False)


def test_dpo_command_reads_a_config_without_method_as_dpo(tmp_path, tiny_model_dir, capsys):
    from finetuning.cli import _load

    path = write_yaml(tmp_path / "dpo.yaml", silogen_dpo_config(tmp_path, tiny_model_dir))
    cfg = _load(str(path), "dpo")
    assert isinstance(cfg, DPOExperimentConfig) and cfg.training_args["beta"] == 0.2
    # `sft` on the same file reads it as SFT, as before, and says what to do
    assert main(["sft", str(path)]) == 2
    error = capsys.readouterr().err
    assert "training_args.beta: unknown key" in error
    assert "sft_args: required key is missing; a DPO or KTO config: set `method: dpo`" in error


def test_a_config_naming_another_method_is_still_refused(tmp_path, tiny_model_dir, capsys):
    path = write_yaml(tmp_path / "sft.yaml", sft_config(tmp_path, tiny_model_dir))
    assert main(["dpo", str(path)]) == 2
    assert "this config is for `sft`; run it with `finetuning sft" in capsys.readouterr().err


def test_validate_reads_a_dpo_shaped_config_as_dpo(tmp_path, tiny_model_dir, capsys, caplog):
    path = write_yaml(tmp_path / "dpo.yaml", silogen_dpo_config(tmp_path, tiny_model_dir))
    assert isinstance(load_any_config(path), DPOExperimentConfig)
    assert main(["validate", str(path)]) == 0
    assert "config OK" in capsys.readouterr().out
    assert "method: not given; read as dpo" in caplog.text


def test_trl_style_preference_rows_point_to_our_keys(tmp_path, tiny_model_dir, capsys):
    rows = [{"prompt": "Capital of Tusello?", "chosen": "Yorren.", "rejected": "No idea."}] * 4
    data = write_jsonl(tmp_path / "trl.jsonl", rows)
    path = write_yaml(tmp_path / "dpo.yaml", silogen_dpo_config(tmp_path, tiny_model_dir, data=data))
    assert main(["dpo", str(path)]) == 2
    error = capsys.readouterr().err
    assert f"{data}:1:" in error and "TRL-style prompt/chosen/rejected: rename to *_messages" in error


@pytest.mark.parametrize(("level", "warn_only"), [("full", False), ("half", True)])
def test_determinism_switches_torch_to_deterministic_algorithms(tmp_path, tiny_model_dir, level, warn_only):
    from finetuning.train.lifecycle import training_run
    from finetuning.train.run import RunOptions

    config = sft_config(tmp_path, tiny_model_dir, run_conf={"determinism": level})
    cfg = load_any_config(write_yaml(tmp_path / "c.yaml", config))
    assert not torch.are_deterministic_algorithms_enabled()
    with training_run(cfg, RunOptions()):
        assert torch.are_deterministic_algorithms_enabled()
        assert torch.is_deterministic_algorithms_warn_only_enabled() is warn_only
        assert not torch.backends.cudnn.benchmark and torch.backends.cudnn.deterministic
    assert not torch.are_deterministic_algorithms_enabled()  # the run's end put torch back


@pytest.mark.slow
def test_full_determinism_trains_on_cpu(tmp_path, tiny_model_dir, monkeypatch):
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    config = sft_config(tmp_path, tiny_model_dir, run_conf={"determinism": "full"}, training_args={"max_steps": 2})
    assert main(["sft", str(write_yaml(tmp_path / "c.yaml", config))]) == 0
    assert (tmp_path / "out" / "checkpoint-final").is_dir()


def test_determinism_values(tmp_path, tiny_model_dir, capsys):
    path = write_yaml(tmp_path / "c.yaml", sft_config(tmp_path, tiny_model_dir, run_conf={"determinism": "always"}))
    assert main(["validate", str(path)]) == 2
    assert "run_conf.determinism: must be 'no', 'half' or 'full', got 'always'" in capsys.readouterr().err
    path.write_text(path.read_text().replace("determinism: always", "determinism: no"))  # YAML 1.1: false
    assert load_any_config(path).run_conf.determinism == "no"


@pytest.mark.slow
def test_resolved_config_runs_again_from_another_directory(tmp_path, tiny_model_dir, monkeypatch):
    """Relative paths in the config, run from one directory; its saved config from another."""
    first = tmp_path / "first"
    (first / "data").mkdir(parents=True)
    (first / "data" / "facts.jsonl").write_bytes((REPO / "examples" / "data" / "facts.jsonl").read_bytes())
    config = sft_config(first, tiny_model_dir, training_args={"max_steps": 2, "output_dir": "out"})
    config["data_conf"]["training_data"]["datasets"] = [{"path": "data/facts.jsonl"}]
    monkeypatch.chdir(first)
    resolved = dump_resolved_config(load_any_config(write_yaml(first / "c.yaml", config)))
    assert main(["sft", "c.yaml"]) == 0
    saved = first / "out" / "checkpoint-final" / "finetuning_config.yaml"

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    again = load_any_config(saved)
    assert dump_resolved_config(again) == resolved
    assert again.training_args["output_dir"] == str(first / "out")
    # the same config trains again from here (into a new output_dir: the first one holds a finished run)
    document = yaml.safe_load(saved.read_text())
    document["training_args"]["output_dir"] = str(elsewhere / "out")
    rerun = write_yaml(elsewhere / "rerun.yaml", document)
    assert main(["validate", str(rerun)]) == 0
    assert main(["sft", str(rerun)]) == 0
    assert (elsewhere / "out" / "checkpoint-final").is_dir()


def test_version_names_the_package_and_its_libraries(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out.strip()
    assert out == version_line() and out.startswith("finetuning ")
    assert f"torch {torch.__version__}" in out and "transformers " in out and "trl " in out
