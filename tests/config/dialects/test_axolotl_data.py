"""The axolotl dialect's data keys: dataset types and their fields, the validation split, the chat template, sequence
length and packing; and `rl: dpo|ipo|kto` with axolotl's preference dataset types."""

from __future__ import annotations

import pytest

from finetuning.config.dialects import Context
from tests.config.dialects.test_axolotl import config, native_of, notices_of, problems_of
from tests.config.dialects.test_vectorlm import at


def datasets(*entries: dict, **changes) -> dict:
    return config(datasets=[{"path": "d.jsonl", **entry} for entry in entries], **changes)


def entry_of(data: dict, index: int = 0) -> dict:
    return native_of(data)["data_conf"]["training_data"]["datasets"][index]


# --- SFT dataset types -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("entry", "expected"),
    [
        ({"type": "alpaca"}, {"path": "d.jsonl", "format": "alpaca"}),
        ({"type": "oasst"}, {"path": "d.jsonl", "format": "oasst"}),
        ({"type": "sharegpt"}, {"path": "d.jsonl", "format": "sharegpt"}),
        ({"type": "completion", "field": "text"}, {"path": "d.jsonl", "format": "text"}),
        (
            {"type": "chat_template"},
            {
                "path": "d.jsonl",
                "format": "messages",
                "roles": {"user": ["user", "human"], "assistant": ["assistant", "gpt"], "system": ["system"]},
            },
        ),
        (
            {
                "type": "chat_template",
                "field_messages": "conversations",
                "message_property_mappings": {"role": "from", "content": "value"},
                "roles": {"user": ["human"], "assistant": ["gpt"]},
                "roles_to_train": ["assistant"],
                "train_on_eos": "turn",
            },
            {
                "path": "d.jsonl",
                "format": "messages",
                "columns": {"role": "from", "content": "value", "messages": "conversations"},
                "roles": {"user": ["human"], "assistant": ["gpt"]},
            },
        ),
        (
            {"type": "chat_template", "message_field_role": "speaker", "message_field_content": "text"},
            {
                "path": "d.jsonl",
                "format": "messages",
                "columns": {"role": "speaker", "content": "text"},
                "roles": {"user": ["user", "human"], "assistant": ["assistant", "gpt"], "system": ["system"]},
            },
        ),
        (
            {"type": "alpaca", "ds_type": "json", "split": "train", "name": "main", "revision": "v1"},
            {"path": "d.jsonl", "format": "alpaca", "split": "train", "name": "main", "revision": "v1"},
        ),
        ({"type": "alpaca", "train_on_split": "test"}, {"path": "d.jsonl", "format": "alpaca", "split": "test"}),
        (
            {"type": "alpaca", "data_files": "a.json", "path": "org/data"},
            {"path": "org/data", "format": "alpaca", "data_files": ["a.json"]},
        ),
    ],
)
def test_sft_dataset_entries(entry, expected):
    assert entry_of(datasets(entry)) == expected


@pytest.mark.parametrize(
    ("entry", "problem"),
    [
        ({"type": "alpaka"}, "datasets[0].type: 'alpaka' is not a type this engine reads; did you mean 'alpaca'?"),
        (
            {"type": "pygmalion"},
            "datasets[0].type: 'pygmalion' is not a type this engine reads; supported: alpaca, oasst, sharegpt, "
            "chat_template, completion",
        ),
        ({}, "datasets[0].type: required key is missing"),
        ({"type": "alpaca", "ds_type": "csv"}, "datasets[0].ds_type: csv, but d.jsonl is a json file"),
        ({"type": "alpaca", "split": "a", "train_on_split": "b"}, "datasets[0].train_on_split: split and "),
        ({"type": "completion", "field": "body"}, "datasets[0].field: unknown value 'body'"),
        ({"type": "chat_template", "roles_to_train": ["user", "assistant"]}, "datasets[0].roles_to_train: only"),
        ({"type": "chat_template", "train_on_eos": "all"}, "datasets[0].train_on_eos: unknown value 'all'"),
        (
            {"type": "chat_template", "message_property_mappings": {"role": "r", "tool_calls": "t"}},
            "datasets[0].message_property_mappings.tool_calls: only role and content are read from a message",
        ),
        ({"type": "alpaca", "chat_template": "chatml"}, "datasets[0].chat_template: one chat template per run"),
        ({"type": "alpaca", "shards": 4}, "datasets[0].shards: sharding a dataset is not supported"),
    ],
)
def test_dataset_entry_problems(entry, problem):
    assert any(p.startswith(problem) for p in problems_of(datasets(entry))), problems_of(datasets(entry))


def test_a_path_is_required_and_datasets_must_be_a_list():
    assert problems_of(config(datasets=[{"type": "alpaca"}])) == ["datasets[0].path: required key is missing"]
    assert problems_of(config(datasets={"path": "d"}))[0].startswith("datasets: must be a list of one or more")


def test_fields_the_type_does_not_read_are_noticed():
    assert "datasets[0].field_messages: not used by type alpaca" in notices_of(
        datasets({"type": "alpaca", "field_messages": "conversations"})
    )


# --- validation data -------------------------------------------------------------------------------------------------


def test_val_set_size_is_an_automatic_split_seeded_by_seed():
    assert native_of(config(val_set_size=0.05, seed=7))["data_conf"]["validation_data"] == {
        "type": "AUTO_SPLIT",
        "ratio": 0.05,
        "seed": 7,
    }
    assert native_of(config(val_set_size=0.0))["data_conf"]["validation_data"] == {"type": "NONE"}
    assert native_of(config())["data_conf"]["validation_data"] == {"type": "NONE"}
    assert problems_of(config(val_set_size=100)) == ["val_set_size: must be between 0 and 1, got 100"]


def test_test_datasets_are_the_validation_data():
    data = config(test_datasets=[{"path": "v.jsonl", "type": "alpaca"}])
    assert native_of(data)["data_conf"]["validation_data"] == {
        "type": "CONCATENATION",
        "datasets": [{"path": "v.jsonl", "format": "alpaca"}],
    }
    assert problems_of(config(test_datasets=[{"path": "v.jsonl", "type": "alpaca"}], val_set_size=0.1)) == [
        "val_set_size: test_datasets and val_set_size cannot both be set (as in axolotl); keep one"
    ]


# --- chat template ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "name"),
    [
        (None, "keep-original"),
        ("tokenizer_default", "keep-original"),
        ("chatml", "chat-ml"),
        ("llama3", "simplified-llama31"),
    ],  # fmt: skip
)
def test_chat_template_names(value, name):
    assert native_of(config(chat_template=value))["data_conf"]["chat_template_name"] == name


def test_other_chat_templates_are_refused_with_the_list():
    (problem,) = problems_of(config(chat_template="gemma"))
    assert problem.startswith("chat_template: 'gemma' is not available here; supported: tokenizer_default, chatml, ")
    assert "chat_template_jinja" in problem
    assert problems_of(config(chat_template="chatlm"))[0].startswith(
        "chat_template: 'chatlm' is not available here; did you mean 'chatml'?"
    )


def test_chat_template_jinja():
    jinja = "{% for m in messages %}{{ m['content'] }}{% endfor %}"
    data_conf = native_of(config(chat_template="jinja", chat_template_jinja=jinja))["data_conf"]
    assert data_conf["chat_template_jinja"] == jinja and "chat_template_name" not in data_conf
    assert problems_of(config(chat_template="jinja")) == [
        "chat_template: jinja needs chat_template_jinja (the template's text)"
    ]
    assert problems_of(config(chat_template="chatml", chat_template_jinja=jinja)) == [
        "chat_template_jinja: applies with chat_template: jinja (or unset), not chatml"
    ]


def test_data_options():
    data_conf = native_of(
        config(
            dataset_prepared_path="prepared",
            dataset_processes=4,
            dataset_exact_deduplication=True,
            default_system_message="Be brief.",
        )
    )["data_conf"]
    assert (data_conf["prepared_path"], data_conf["num_preprocess_workers"]) == ("prepared", 4)
    assert (data_conf["deduplicate"], data_conf["default_system_message"]) == (True, "Be brief.")
    assert at(native_of(config(dataset_num_proc=2)), "data_conf.num_preprocess_workers") == 2


# --- sequence length, packing, masking -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({}, {"max_seq_length": 512, "train_on_completions_only": True}),
        ({"train_on_inputs": True, "sequence_len": 1024}, {"max_seq_length": 1024, "train_on_completions_only": False}),
        (
            {"excess_length_strategy": "raise"},
            {"max_seq_length": 512, "length_handling": "error", "train_on_completions_only": True},
        ),  # fmt: skip
        (
            {"excess_length_strategy": "drop"},
            {"max_seq_length": 512, "length_handling": "filter", "train_on_completions_only": True},
        ),  # fmt: skip
        ({"sample_packing": True}, {"max_seq_length": 512, "train_on_completions_only": True, "packing": True}),
        (
            {"sample_packing": True, "eval_sample_packing": False},
            {"max_seq_length": 512, "train_on_completions_only": True, "packing": True, "eval_packing": False},
        ),  # fmt: skip
    ],
)
def test_sft_args(changes, expected):
    assert native_of(config(**changes))["sft_args"] == expected


def test_packing_keys_that_do_not_apply_are_noticed():
    assert "eval_sample_packing: not used: sample_packing is not on" in notices_of(config(eval_sample_packing=True))
    assert any(
        n.startswith("pad_to_sequence_len: batches are padded") for n in notices_of(config(pad_to_sequence_len=True))
    )


# --- rl: dpo / ipo / kto -------------------------------------------------------------------------------------------


def test_dpo_with_chatml_intel():
    native = native_of(datasets({"type": "chatml.intel"}, rl="dpo", rl_beta=0.2, sequence_len=1024))
    assert native["method"] == "dpo" and "sft_args" not in native
    assert native["data_conf"]["training_data"]["datasets"] == [
        {"path": "d.jsonl", "format": "prompt_chosen_rejected", "columns": {"prompt": "question"}}
    ]
    assert native["data_conf"]["chat_template_name"] == "chat-ml"  # the template the type renders
    assert (native["training_args"]["beta"], native["training_args"]["max_length"]) == (0.2, 1024)


@pytest.mark.parametrize(
    ("kind", "columns", "template"),
    [
        ("chatml.icr", {"prompt": "input"}, "chat-ml"),
        ("chatml.prompt_pairs", None, "chat-ml"),
        ("llama3.intel", {"prompt": "question"}, "simplified-llama31"),
    ],
)
def test_dpo_types_with_a_fixed_template(kind, columns, template):
    native = native_of(datasets({"type": kind}, rl="dpo"))
    assert native["data_conf"]["training_data"]["datasets"][0].get("columns") == columns
    assert native["data_conf"]["chat_template_name"] == template


def test_dpo_with_chat_template_default():
    entry = {
        "type": "chat_template.default",
        "field_messages": "conversation",
        "field_chosen": "better",
        "field_rejected": "worse",
        "message_property_mappings": {"role": "role", "content": "content"},
        "roles": {"system": ["system"], "user": ["user"], "assistant": ["assistant"]},
    }
    native = native_of(datasets(entry, rl="dpo", chat_template="llama3"))
    assert native["data_conf"]["training_data"]["datasets"] == [
        {
            "path": "d.jsonl",
            "format": "messages_chosen_rejected",
            "columns": {
                "role": "role",
                "content": "content",
                "messages": "conversation",
                "chosen": "better",
                "rejected": "worse",
            },
            "roles": {"system": ["system"], "user": ["user"], "assistant": ["assistant"]},
        }
    ]
    assert native["data_conf"]["chat_template_name"] == "simplified-llama31"


def test_a_type_that_renders_another_template_than_chat_template_is_a_problem():
    assert problems_of(datasets({"type": "llama3.intel"}, rl="dpo", chat_template="chatml")) == [
        "datasets[0].type: renders the Llama 3 chat template, but the run's chat template is chatml; one template "
        "per run: align chat_template and the types"
    ]


def test_kto_with_llama3_ultra():
    native = native_of(datasets({"type": "llama3.ultra", "split": "train"}, rl="kto", kto_desirable_weight=0.2))
    assert native["method"] == "kto"
    assert native["data_conf"]["training_data"]["datasets"] == [
        {"path": "d.jsonl", "format": "prompt_completion_label", "split": "train"}
    ]
    assert native["data_conf"]["chat_template_name"] == "simplified-llama31"
    args = native["training_args"]
    assert (args["desirable_weight"], args["undesirable_weight"]) == (0.2, 1.0)  # axolotl passes both, 1.0 unless set


def test_kto_argilla_reads_the_instruction():
    assert entry_of(datasets({"type": "chatml.argilla"}, rl="kto"))["columns"] == {"prompt": "instruction"}


def test_ipo_is_dpo_with_the_ipo_loss():
    native = native_of(datasets({"type": "chatml.intel"}, rl="ipo"))
    assert (native["method"], native["training_args"]["loss_type"]) == ("dpo", ["ipo"])


def test_dpo_options():
    data = datasets(
        {"type": "chatml.intel"},
        rl="dpo",
        dpo_loss_type=["sigmoid", "sft"],
        dpo_loss_weights=[1.0, 0.5],
        dpo_label_smoothing=0.1,
        precompute_ref_log_probs=True,
        max_prompt_len=256,
    )
    args = native_of(data)["training_args"]
    assert (args["loss_type"], args["loss_weights"], args["label_smoothing"]) == (["sigmoid", "sft"], [1.0, 0.5], 0.1)
    assert (args["precompute_ref_log_probs"], args["max_prompt_length"]) == (True, 256)


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (
            datasets({"type": "llama3.ultra"}, rl="kto", dpo_label_smoothing=0.1),
            "dpo_label_smoothing: not used: it applies to rl dpo, this is kto",
        ),  # fmt: skip
        (datasets({"type": "alpaca"}, rl_beta=0.1), "rl_beta: not used: rl is not set (this is SFT)"),
        (
            datasets({"type": "chatml.intel"}, rl="dpo", train_on_inputs=False),
            "train_on_inputs: not used: it applies to SFT, this is rl: dpo",
        ),  # fmt: skip
    ],
)
def test_keys_of_another_method_are_noticed(data, expected):
    assert expected in notices_of(data)


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (datasets({"type": "chatml.intel"}, rl="orpo"), "rl: orpo is not available here; supported: dpo, ipo, kto"),
        (datasets({"type": "chatml.intel"}, rl="dop"), "rl: unknown value 'dop'; did you mean 'dpo'?"),
        (
            datasets({"type": "alpaca"}, rl="dpo"),
            "datasets[0].type: 'alpaca' is not a type this engine reads for rl: "
            "dpo; supported for rl: dpo: chatml.intel, chatml.icr, chatml.prompt_pairs, llama3.intel, llama3.icr, "
            "llama3.prompt_pairs, chat_template.default",
        ),  # fmt: skip
        (
            datasets({"type": "chatml.intel"}, rl="dpo", sample_packing=True),
            "sample_packing: packing applies to SFT; preference training (dpo) trains unpacked pairs",
        ),  # fmt: skip
    ],
)
def test_rl_problems(data, expected):
    assert expected in problems_of(data)


def test_a_dpo_translation_validates_as_native():
    from finetuning.config import validate_config
    from finetuning.config.loading import config_class_for

    native = native_of(datasets({"type": "chatml.intel"}, rl="dpo", val_set_size=0.1), Context())
    cfg = validate_config(native, config_class_for("dpo"))
    assert cfg.training_args["max_length"] == 512 and cfg.data_conf.chat_template_name == "chat-ml"
