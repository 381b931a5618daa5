"""`finetuning CMD CONFIG --section.key VALUE`: the command line's dotted overrides, end to end."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from finetuning.cli import build_parser, main
from finetuning.config.dialects import DIALECTS
from finetuning.errors import USER_ERROR_EXIT
from tests.conftest import sft_config, write_yaml

AXOLOTL = Path(__file__).resolve().parents[2] / "examples" / "axolotl" / "llama-3-lora-1b.yml"


@pytest.mark.slow
def test_an_sft_run_trains_with_the_overrides_and_records_them(tmp_path, tiny_model_dir):
    config = write_yaml(tmp_path / "c.yaml", sft_config(tmp_path, tiny_model_dir, training_args={"max_steps": 30}))
    args = ["--training_args.max_steps", "2", "--training_args.learning_rate=1e-4", "--training_args.output_dir"]
    assert main(["sft", str(config), *args, str(tmp_path / "other")]) == 0
    final = tmp_path / "other" / "checkpoint-final"
    resolved = yaml.safe_load((final / "finetuning_config.yaml").read_text())
    assert resolved["training_args"]["max_steps"] == 2
    assert resolved["training_args"]["learning_rate"] == 1e-4
    assert resolved["_provenance"]["overrides"] == [
        "training_args.max_steps=2",
        "training_args.learning_rate=1e-4",
        f"training_args.output_dir={tmp_path / 'other'}",
    ]
    assert "transformers" in resolved["_provenance"]["versions"]


def test_convert_shows_an_axolotl_config_with_its_overrides(capsys):
    assert main(["convert", str(AXOLOTL), "--learning_rate", "1e-4", "--lora_r", "4"]) == 0
    native = yaml.safe_load(capsys.readouterr().out)
    assert native["training_args"]["learning_rate"] == 1e-4
    assert native["peft_conf"]["peft_kwargs"]["r"] == 4


def test_an_unknown_override_fails_the_command_with_a_did_you_mean(tmp_path, capsys):
    config = write_yaml(tmp_path / "c.yaml", sft_config(tmp_path, tmp_path / "model"))
    assert main(["validate", str(config), "--training_args.learnig_rate", "1e-4"]) == USER_ERROR_EXIT
    assert "did you mean --training_args.learning_rate?" in capsys.readouterr().err
    assert main(["validate", str(config), "--shwo", "2"]) == USER_ERROR_EXIT
    assert "did you mean --show?" in capsys.readouterr().err


def test_a_bad_override_value_is_reported_at_the_users_key(tmp_path, capsys):
    config = write_yaml(tmp_path / "c.yaml", sft_config(tmp_path, tmp_path / "model"))
    assert main(["validate", str(config), "--batchsize_conf.total_train_batch_size", "many"]) == USER_ERROR_EXIT
    err = capsys.readouterr().err
    assert (
        "batchsize_conf.total_train_batch_size: " in err and "(set by --batchsize_conf.total_train_batch_size)" in err
    )


def test_options_of_the_cli_itself_are_still_checked(tmp_path, capsys):
    config = str(write_yaml(tmp_path / "c.yaml", sft_config(tmp_path, tmp_path / "model")))
    with pytest.raises(SystemExit) as caught:
        main(["schema", "--training_args.learning_rate", "1"])  # schema takes no config: no overrides
    assert caught.value.code == 2
    with pytest.raises(SystemExit):
        main(["validate", config, "--logging-level", "DEBUG"])
    assert "give it before the command" in capsys.readouterr().err
    assert main(["validate", config, "--training_args.seed"]) == USER_ERROR_EXIT
    assert "--training_args.seed: needs a value" in capsys.readouterr().err


@pytest.mark.parametrize("command", ["sft", "dpo", "validate", "preprocess", "convert"])
def test_help_explains_the_overrides_with_an_example_per_dialect(command):
    parser = build_parser()
    subcommands = next(a for a in parser._actions if hasattr(a, "choices") and isinstance(a.choices, dict))
    text = subcommands.choices[command].format_help()
    assert "[--KEY VALUE ...]" in text and "config overrides: --KEY VALUE" in text
    for dialect in DIALECTS:
        assert f"\n  {dialect:<10} --" in text
