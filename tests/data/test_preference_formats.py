"""Preference row formats (issue 15, D7): prompt_chosen_rejected, messages_chosen_rejected and KTO's
prompt_completion_label rows become exactly the pairs and examples their native rows give (token by token), under
the user's field and role names; their problems name file, line and the user's fields; each method reads only its
own formats."""

from __future__ import annotations

import pytest

from finetuning.config.loading import ConfigError, load_any_config
from finetuning.data.preference import build_dpo_datasets, build_kto_datasets
from finetuning.data.readers import DataError
from finetuning.data.templates import get_template
from finetuning.model.tokenizer import setup_tokenizer
from tests.conftest import sft_config, write_jsonl, write_yaml
from tests.data.test_columns_roles import data_conf

SYSTEM = {"role": "system", "content": "Be brief."}
NATIVE = [
    {
        "prompt_messages": [SYSTEM, {"role": "user", "content": "Capital of Tusello?"}],
        "chosen_messages": [{"role": "assistant", "content": "Yorren."}],
        "rejected_messages": [{"role": "assistant", "content": "Quellton."}],
    },
    {
        "prompt_messages": [{"role": "user", "content": "River?"}],
        "chosen_messages": [{"role": "assistant", "content": "The Vasren."}],
        "rejected_messages": [{"role": "assistant", "content": "No idea."}],
    },
]
PAIR_COLUMNS = ("prompt_ids", "chosen_ids", "rejected_ids")


def pairs(tmp_path, tokenizer, name: str, rows: list[dict], entry: dict | None = None, template: str = "chat-ml"):
    """The DPO pairs (prompt_ids, chosen_ids, rejected_ids per row) of `rows` as one file."""
    conf = data_conf(write_jsonl(tmp_path / f"{name}.jsonl", rows), entry, template=template)
    setup_tokenizer(tokenizer, get_template(template), conf)
    train, _, _ = build_dpo_datasets(conf, 512, None, tokenizer)
    return [tuple(train[column][row] for column in PAIR_COLUMNS) for row in range(len(train))]


@pytest.fixture
def native_pairs(tmp_path, tokenizer):
    return pairs(tmp_path, tokenizer, "native", NATIVE)


def test_native_pairs_are_what_the_template_renders(native_pairs, tokenizer):
    """The reference the formats are compared with, checked once against the chat-ml text itself."""

    def ids(text: str) -> list[int]:
        return tokenizer(text, add_special_tokens=False)["input_ids"]

    prompt = "<s><|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nCapital of Tusello?<|im_end|>\n"
    assert native_pairs[0] == (
        ids(prompt + "<|im_start|>assistant\n"),
        ids("Yorren.<|im_end|>\n"),
        ids("Quellton.<|im_end|>\n"),
    )


def test_prompt_chosen_rejected_with_renamed_fields(tmp_path, tokenizer, native_pairs):
    """axolotl's chatml.intel / chatml.argilla rows: question (or instruction) + chosen_response/rejected_response,
    with an optional system (empty: none)."""
    rows = [
        {
            "system": "Be brief.",
            "question": "Capital of Tusello?",
            "chosen_response": "Yorren.",
            "rejected": "Quellton.",
        },
        {"system": "", "question": "River?", "chosen_response": "The Vasren.", "rejected": "No idea."},
    ]
    entry = {"format": "prompt_chosen_rejected", "columns": {"prompt": "question", "chosen": "chosen_response"}}
    assert pairs(tmp_path, tokenizer, "intel", rows, entry) == native_pairs


@pytest.mark.parametrize(
    ("rows", "entry"),
    [
        (  # chat_template.default: a message list, string completions
            [
                {
                    "messages": [SYSTEM, {"role": "user", "content": "Capital of Tusello?"}],
                    "chosen": "Yorren.",
                    "rejected": "Quellton.",
                },
                {"messages": [{"role": "user", "content": "River?"}], "chosen": "The Vasren.", "rejected": "No idea."},
            ],
            {},
        ),
        (  # completions as one message each, other field and role names
            [
                {
                    "conversation": [
                        {"from": "system", "value": "Be brief."},
                        {"from": "human", "value": "Capital of Tusello?"},
                    ],
                    "good": {"from": "gpt", "value": "Yorren."},
                    "bad": {"from": "gpt", "value": "Quellton."},
                },
                {
                    "conversation": [{"from": "human", "value": "River?"}],
                    "good": {"from": "gpt", "value": "The Vasren."},
                    "bad": {"from": "gpt", "value": "No idea."},
                },
            ],
            {
                "columns": {
                    "messages": "conversation",
                    "chosen": "good",
                    "rejected": "bad",
                    "role": "from",
                    "content": "value",
                },
                "roles": {"system": ["system"], "user": ["human"], "assistant": ["gpt"]},
            },
        ),
    ],
)
def test_messages_chosen_rejected(tmp_path, tokenizer, native_pairs, rows, entry):
    assert pairs(tmp_path, tokenizer, "mcr", rows, {"format": "messages_chosen_rejected", **entry}) == native_pairs


def test_ultrafeedback_and_argilla_shapes(tmp_path, tokenizer):
    """UltraFeedback: a string prompt and completions as conversations whose last message is the completion;
    argilla/dpo-mix: no prompt field, chosen and rejected whole conversations sharing the prompt."""
    user = {"role": "user", "content": "River?"}
    expected = pairs(tmp_path, tokenizer, "native", NATIVE[1:])
    ultra = [
        {
            "prompt": "River?",
            "chosen": [user, {"role": "assistant", "content": "The Vasren."}],
            "rejected": [user, {"role": "assistant", "content": "No idea."}],
        }
    ]
    entry = {"format": "messages_chosen_rejected", "columns": {"messages": "prompt"}}
    assert pairs(tmp_path, tokenizer, "ultra", ultra, entry) == expected
    argilla = [{key: value for key, value in ultra[0].items() if key != "prompt"}]
    assert pairs(tmp_path, tokenizer, "argilla", argilla, {"format": "messages_chosen_rejected"}) == expected


def test_prompt_completion_label_gives_the_native_kto_examples(tmp_path, tokenizer):
    rows = [
        {"instruction": "Capital?", "completion": "Yorren.", "label": True, "system": "Be brief."},
        {"instruction": "River?", "completion": "No idea.", "label": False},
    ]
    native = [
        {
            "prompt_messages": [SYSTEM, {"role": "user", "content": "Capital?"}],
            "completion_messages": [{"role": "assistant", "content": "Yorren."}],
            "label": True,
        },
        {
            "prompt_messages": [{"role": "user", "content": "River?"}],
            "completion_messages": [{"role": "assistant", "content": "No idea."}],
            "label": False,
        },
    ]

    def examples(name: str, written: list[dict], entry: dict | None = None):
        conf = data_conf(write_jsonl(tmp_path / f"{name}.jsonl", written), entry)
        setup_tokenizer(tokenizer, get_template("chat-ml"), conf)
        train, _, report = build_kto_datasets(conf, tokenizer, seed=1)
        return sorted(train.to_list(), key=lambda example: example["label"]), report

    entry = {"format": "prompt_completion_label", "columns": {"prompt": "instruction"}}
    converted, report = examples("kto", rows, entry)
    assert (converted, report) == examples("native", native)
    assert converted[1]["prompt"] == native[0]["prompt_messages"] and converted[1]["label"] is True


@pytest.mark.parametrize(
    ("entry", "row", "reason"),
    [
        (
            {"format": "prompt_chosen_rejected"},
            {"question": "Q?", "chosen": "a", "rejected": "b"},
            "missing 'prompt' (keys found: ['chosen', 'question', 'rejected']); to read it from 'question', set the "
            "dataset entry's columns: {prompt: question}",
        ),
        (
            {"format": "prompt_chosen_rejected", "columns": {"chosen": "best"}},
            {"prompt": "Q?", "best": [{"role": "assistant", "content": "a"}], "rejected": "b"},
            "'best' must be a string, got array (a message list: use format messages_chosen_rejected)",
        ),
        (
            {"format": "prompt_chosen_rejected"},
            {"prompt": "Q?", "chosen": "same", "rejected": "same"},
            "'chosen' and 'rejected' are identical, so the pair prefers nothing",
        ),
        (
            {"format": "prompt_chosen_rejected"},
            {"prompt": "Q?", "chosen": "a", "rejected": "b", "system": 3},
            "'system' must be a string, got number",
        ),
        (
            {"format": "messages_chosen_rejected", "columns": {"role": "from", "content": "value"}},
            {"messages": [{"from": "user", "value": "Q?"}], "chosen": {"from": "user", "value": "a"}, "rejected": "b"},
            "chosen.from is 'user', which is user; a completion is an assistant message",
        ),
        (
            {"format": "messages_chosen_rejected"},
            {
                "chosen": [{"role": "user", "content": "Q?"}, {"role": "assistant", "content": "a"}],
                "rejected": [{"role": "user", "content": "Other?"}, {"role": "assistant", "content": "b"}],
            },
            "'chosen' and 'rejected' differ before their last message",
        ),
        (
            {"format": "messages_chosen_rejected", "columns": {"messages": "dialog"}},
            {"chosen": "a", "rejected": "b"},
            "missing 'dialog' (keys found: ['chosen', 'rejected']); without it, 'chosen' and 'rejected' must each be "
            "a whole conversation",
        ),
        (
            {"format": "messages_chosen_rejected", "roles": {"user": ["human"], "assistant": ["gpt"]}},
            {"messages": [{"role": "user", "content": "Q?"}], "chosen": "a", "rejected": "b"},
            "messages[0].role is 'user' (roles known: human, gpt;",
        ),
    ],
)
def test_problems_name_file_line_and_the_users_fields(tmp_path, tokenizer, entry, row, reason):
    good = {
        "prompt_chosen_rejected": {"prompt": "P?", "chosen": "x", "rejected": "y"},
        "messages_chosen_rejected": {"messages": "P?", "chosen": "x", "rejected": "y"},
    }[entry["format"]]
    if "columns" in entry and entry["format"] == "prompt_chosen_rejected":
        good = {"prompt": "P?", "best": "x", "rejected": "y"}
    if "columns" in entry and "messages" in entry["columns"]:
        good = {entry["columns"]["messages"]: "P?", "chosen": "x", "rejected": "y"}
    if "roles" in entry:
        good = {"messages": [{"role": "human", "content": "P?"}], "chosen": "x", "rejected": "y"}
    path = write_jsonl(tmp_path / "pairs.jsonl", [good, row])
    with pytest.raises(DataError) as error:
        _build(tokenizer, path, entry)
    (problem,) = error.value.problems
    assert problem.startswith(f"{path}:2: ") and reason in problem, problem


def _build(tokenizer, path, entry: dict):
    conf = data_conf(path, entry)
    setup_tokenizer(tokenizer, get_template("chat-ml"), conf)
    return build_dpo_datasets(conf, 512, None, tokenizer)


def test_kto_label_must_be_a_boolean(tmp_path, tokenizer):
    path = write_jsonl(tmp_path / "kto.jsonl", [{"prompt": "Q?", "completion": "a", "ok": "yes"}])
    conf = data_conf(path, {"format": "prompt_completion_label", "columns": {"label": "ok"}})
    setup_tokenizer(tokenizer, get_template("chat-ml"), conf)
    with pytest.raises(DataError) as error:
        build_kto_datasets(conf, tokenizer, seed=1)
    assert error.value.problems == [f"{path}:1: 'ok' must be true (desirable) or false (undesirable), got 'yes'"]


def test_a_role_order_problem_of_the_converted_pair_names_the_users_field(tmp_path, tokenizer):
    rows = [
        {
            "dialog": [{"role": "user", "content": "Q?"}, {"role": "assistant", "content": "A."}],
            "chosen": "a",
            "rejected": "b",
        }
    ]
    path = write_jsonl(tmp_path / "order.jsonl", rows)
    conf = data_conf(
        path, {"format": "messages_chosen_rejected", "columns": {"messages": "dialog"}}, "mistral-with-system"
    )
    setup_tokenizer(tokenizer, get_template("mistral-with-system"), conf)
    with pytest.raises(DataError) as error:
        build_dpo_datasets(conf, 512, None, tokenizer)
    assert error.value.problems == [
        f"{path}:1: 'dialog' must end with a user message for the 'mistral-with-system' chat template"
    ]


def method_config(tmp_path, model_dir, method: str, entry: dict) -> dict:
    """A small config of `method` whose one training file has the dataset keys `entry`."""
    config = sft_config(tmp_path, model_dir, method=method)
    if method != "sft":
        del config["sft_args"]
    config["data_conf"]["training_data"]["datasets"][0].update(entry)
    return config


@pytest.mark.parametrize(
    ("method", "entry", "problem"),
    [
        (
            "sft",
            {"format": "prompt_chosen_rejected"},
            "format: 'prompt_chosen_rejected' applies to DPO/KTO data; sft reads",
        ),
        (
            "dpo",
            {"format": "prompt_completion_label"},
            "format: 'prompt_completion_label' applies to KTO data; dpo reads",
        ),
        (
            "dpo",
            {"format": "alpaca"},
            "format: 'alpaca' applies to SFT data; dpo reads messages, prompt_chosen_rejected",
        ),
        ("kto", {"columns": {"messages": "m"}}, "columns: kto rows of format messages have fixed fields"),
    ],
)
def test_each_method_reads_its_own_formats(tmp_path, tiny_model_dir, method, entry, problem):
    config = method_config(tmp_path, tiny_model_dir, method, entry)
    with pytest.raises(ConfigError) as error:
        load_any_config(write_yaml(tmp_path / "c.yaml", config))
    assert f"data_conf.training_data.datasets[0].{problem}" in str(error.value), str(error.value)


@pytest.mark.parametrize("method", ["dpo", "kto"])
def test_pair_formats_validate_for_dpo_and_kto(tmp_path, tiny_model_dir, method):
    entry = {"format": "prompt_chosen_rejected", "columns": {"prompt": "question"}}
    cfg = load_any_config(write_yaml(tmp_path / "c.yaml", method_config(tmp_path, tiny_model_dir, method, entry)))
    assert cfg.data_conf.training_data.datasets[0].columns.prompt == "question"
