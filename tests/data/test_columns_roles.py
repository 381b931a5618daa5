"""`datasets[].columns` and `datasets[].roles` (issue 15, D1/D2): message lists under other field and role names are
read into our messages, rendered and masked exactly as native messages rows, token by token; their problems name
the file, the line and the user's own field names."""

from __future__ import annotations

import pytest

from finetuning.config.data import ChatTrainValidConfig
from finetuning.config.loading import ConfigError, load_any_config
from finetuning.config.sft import SFTArguments
from finetuning.data.readers import DataError
from finetuning.data.sft import build_sft_datasets
from finetuning.data.templates import get_template
from finetuning.model.tokenizer import setup_tokenizer
from tests.conftest import sft_config, write_jsonl, write_yaml
from tests.data.test_formats import chat_ml


def data_conf(path, entry: dict | None = None, template: str | None = "chat-ml", **settings) -> ChatTrainValidConfig:
    """A data section of one training file (`entry`: its other dataset keys), no validation data; `template` None
    leaves chat_template_name unset."""
    named = {} if template is None else {"chat_template_name": template}
    return ChatTrainValidConfig(
        training_data={"type": "CONCATENATION", "datasets": [{"path": str(path), **(entry or {})}]},
        validation_data={"type": "NONE"},
        **named,
        **settings,
    )


def sft_examples(tokenizer, conf: ChatTrainValidConfig, completions_only: bool = True, **sft_args):
    """(input_ids, labels) of each training example, as `finetuning sft` builds them; and the report."""
    markers, _ = setup_tokenizer(tokenizer, get_template(conf.chat_template_name), conf)
    args = SFTArguments(**{"max_seq_length": 512, "train_on_completions_only": completions_only, **sft_args})
    train, _, report = build_sft_datasets(conf, args, tokenizer, markers if completions_only else None)
    return list(zip(train["input_ids"], train["labels"], strict=True)), report


def test_messages_under_other_field_and_property_names(tmp_path, tokenizer):
    """axolotl's chat_template with field_messages: conversations, message_property_mappings {role: from,
    content: value} and roles {user: [human], assistant: [gpt]}: the same tokens and labels as native rows."""
    rows = [
        {"conversations": [{"from": "human", "value": "Hi", "weight": 0}, {"from": "gpt", "value": "Yo"}]},
        {"conversations": [{"from": "human", "value": "Capital?"}, {"from": "gpt", "value": "Yorren."}]},
    ]
    path = write_jsonl(tmp_path / "chats.jsonl", rows)
    entry = {
        "columns": {"messages": "conversations", "role": "from", "content": "value"},
        "roles": {"user": ["human"], "assistant": ["gpt"]},
    }
    examples, _ = sft_examples(tokenizer, data_conf(path, entry))
    assert examples == [chat_ml(tokenizer, "Hi", "Yo"), chat_ml(tokenizer, "Capital?", "Yorren.")]


def test_sharegpt_with_renamed_fields_and_its_own_roles(tmp_path, tokenizer):
    """sharegpt keeps human/gpt/system unless `roles` replaces them; `columns` renames its fields."""
    rows = [
        {
            "dialog": [
                {"speaker": "sys", "text": "Be brief."},
                {"speaker": "q", "text": "Hi"},
                {"speaker": "a", "text": "Yo"},
            ]
        }
    ]
    path = write_jsonl(tmp_path / "share.jsonl", rows)
    entry = {
        "format": "sharegpt",
        "columns": {"messages": "dialog", "role": "speaker", "content": "text"},
        "roles": {"system": ["sys"], "user": ["q"], "assistant": ["a"]},
    }
    (example,), _ = sft_examples(tokenizer, data_conf(path, entry))
    assert example == chat_ml(tokenizer, "Hi", "Yo", system="Be brief.")


def test_roles_alone_map_the_role_names_of_messages_rows(tmp_path, tokenizer):
    rows = [{"messages": [{"role": "human", "content": "Hi"}, {"role": "bot", "content": "Yo"}]}]
    path = write_jsonl(tmp_path / "m.jsonl", rows)
    (example,), _ = sft_examples(tokenizer, data_conf(path, {"roles": {"user": ["human"], "assistant": ["bot"]}}))
    assert example == chat_ml(tokenizer, "Hi", "Yo")


@pytest.mark.parametrize(
    ("entry", "row", "reason"),
    [
        (
            {"format": "sharegpt", "roles": {"user": ["human"], "assistant": ["gpt"]}},
            {"conversations": [{"from": "system", "value": "x"}, {"from": "human", "value": "a"}]},
            "conversations[0].from is 'system' (roles known: human, gpt; map other names to system, user or "
            "assistant with the dataset entry's roles)",
        ),
        (
            {"columns": {"messages": "turns", "role": "who", "content": "says"}},
            {"turns": [{"who": "humna", "says": "x"}]},
            "turns[0].who is 'humna' (roles known: system, user, assistant;",
        ),
        (
            {"columns": {"messages": "turns", "role": "who", "content": "says"}},
            {"turns": [{"who": "user", "says": "  "}, {"who": "assistant", "says": "b"}]},
            "turns[0].says is empty; user messages need text",
        ),
        (
            {"columns": {"messages": "turns", "role": "who", "content": "says"}},
            {"turns": [{"who": "user", "text": "x"}]},
            "turns[0] must be an object with 'who' and 'says'",
        ),
        ({"columns": {"messages": "turns"}}, {"messages": []}, "missing 'turns' (keys found: ['messages'])"),
        (
            {"format": "sharegpt", "columns": {"messages": "dialog"}},
            {"dialog": [{"from": "human", "value": "a"}]},
            "'dialog' has no assistant message, so there is nothing to train on",
        ),
    ],
)
def test_problems_name_file_line_and_the_users_fields(tmp_path, tokenizer, entry, row, reason):
    """An unknown role after mapping lists the roles the mapping knows; every problem names the user's fields."""
    field = (entry.get("columns") or {}).get("messages", "conversations" if entry.get("format") else "messages")
    good = {field: [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]}
    if entry.get("format") == "sharegpt":
        good = {field: [{"from": "human", "value": "a"}, {"from": "gpt", "value": "b"}]}
    elif "role" in (entry.get("columns") or {}):
        good = {field: [{"who": "user", "says": "a"}, {"who": "assistant", "says": "b"}]}
    path = write_jsonl(tmp_path / "rows.jsonl", [good, row])
    with pytest.raises(DataError) as error:
        sft_examples(tokenizer, data_conf(path, entry))
    (problem,) = error.value.problems
    assert problem.startswith(f"{path}:2: ") and reason in problem, problem


def test_a_role_order_problem_names_the_users_list(tmp_path, tokenizer):
    """mistral-with-system needs alternating turns: the converted conversation's problem names the file's field."""
    rows = [
        {"dialog": [{"from": "human", "value": "a"}, {"from": "human", "value": "b"}, {"from": "gpt", "value": "c"}]}
    ]
    path = write_jsonl(tmp_path / "order.jsonl", rows)
    conf = data_conf(path, {"format": "sharegpt", "columns": {"messages": "dialog"}}, template="mistral-with-system")
    with pytest.raises(DataError) as error:
        sft_examples(tokenizer, conf)
    assert error.value.problems == [
        f"{path}:1: dialog[1] has role 'user' where 'assistant' must come: the 'mistral-with-system' chat template "
        "needs user and assistant turns to alternate (one system message may come first)"
    ]


@pytest.mark.parametrize(
    ("entry", "problem"),
    [
        (
            {"format": "sharegpt", "columns": {"prompt": "question"}},
            "data_conf.training_data.datasets[0].columns: prompt: not read by format sharegpt (its columns: "
            "messages, role, content)",
        ),
        (
            {"format": "alpaca", "columns": {"messages": "m"}},
            "data_conf.training_data.datasets[0].columns: format alpaca reads fixed fields",
        ),
        (
            {"format": "alpaca", "roles": {"user": ["human"]}},
            "data_conf.training_data.datasets[0].roles: format alpaca has no role names of its own",
        ),
        (
            {"roles": {"user": ["human"], "assistant": ["human"]}},
            "data_conf.training_data.datasets[0].roles: 'human' is mapped to both user and assistant",
        ),
        ({"roles": {"user": []}}, "data_conf.training_data.datasets[0].roles: user: must be a non-empty list"),
        ({"roles": {"tool": ["t"]}}, "data_conf.training_data.datasets[0].roles.tool: must be 'system', 'user'"),
        ({"columns": {"messages": ""}}, "data_conf.training_data.datasets[0].columns.messages: "),
        ({"columns": {"role": "from", "speaker": "x"}}, "data_conf.training_data.datasets[0].columns.speaker"),
    ],
)
def test_config_refuses_columns_and_roles_that_do_not_apply(tmp_path, tiny_model_dir, entry, problem):
    config = sft_config(tmp_path, tiny_model_dir)
    config["data_conf"]["training_data"]["datasets"][0].update(entry)
    with pytest.raises(ConfigError) as error:
        load_any_config(write_yaml(tmp_path / "c.yaml", config))
    assert problem in str(error.value), str(error.value)
