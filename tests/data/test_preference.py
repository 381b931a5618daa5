"""Preference data: exact prompt/chosen/rejected text per template, token construction, row checks."""

from __future__ import annotations

import json

import pytest

from finetuning.data.preference import (
    dpo_row_problem,
    kto_row_problem,
    preference_row_checker,
    preference_texts,
    split_prompt,
    tokenize_pair,
    truncate_prompt,
)
from finetuning.data.readers import DataError, read_rows
from finetuning.data.templates import get_template
from finetuning.model.tokenizer import setup_tokenizer
from tests.data.test_templates import data_conf

ROW = {
    "prompt_messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Capital of Tusello?"}],
    "chosen_messages": [{"role": "assistant", "content": "Yorren."}],
    "rejected_messages": [{"role": "assistant", "content": "Quellton."}],
}

EXPECTED = {
    "mistral-with-system": (
        "<s><<SYS>>\nBe brief.\n<</SYS>>\n[INST] Capital of Tusello? [/INST]",
        "Yorren.</s> ",
        "Quellton.</s> ",
    ),
    "chat-ml": (
        "<s><|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nCapital of Tusello?<|im_end|>\n"
        "<|im_start|>assistant\n",
        "Yorren.<|im_end|>\n",
        "Quellton.<|im_end|>\n",
    ),
    "poro": (
        "<s><|system|>\nBe brief.</s><|user|>\nCapital of Tusello?</s><|assistant|>\n",
        "Yorren.</s>",
        "Quellton.</s>",
    ),
    "simplified-llama31": (
        "<s><|start_header_id|>system<|end_header_id|>\n\nBe brief.<|eot_id|>"
        "<|start_header_id|>user<|end_header_id|>\n\nCapital of Tusello?<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\n",
        "Yorren.<|eot_id|>",
        "Quellton.<|eot_id|>",
    ),
    "keep-original": (
        "<s>### system:\nBe brief.</s>\n### user:\nCapital of Tusello?</s>\n### assistant:\n",
        "Yorren.</s>\n",
        "Quellton.</s>\n",
    ),
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_prompt_chosen_rejected_text_per_template(name, tokenizer):
    setup_tokenizer(tokenizer, get_template(name), data_conf(name))
    texts = preference_texts(ROW, tokenizer)
    assert (texts["prompt"], texts["chosen"], texts["rejected"]) == EXPECTED[name]


def test_multi_turn_prompt_keeps_earlier_turns_in_the_prompt(tokenizer):
    setup_tokenizer(tokenizer, get_template("chat-ml"), data_conf("chat-ml"))
    row = dict(
        ROW,
        prompt_messages=ROW["prompt_messages"]
        + [{"role": "assistant", "content": "Yorren."}, {"role": "user", "content": "Again?"}],
    )
    texts = preference_texts(row, tokenizer)
    assert texts["prompt"].endswith(
        "<|im_start|>assistant\nYorren.<|im_end|>\n<|im_start|>user\nAgain?<|im_end|>\n<|im_start|>assistant\n"
    )
    assert texts["chosen"] == "Yorren.<|im_end|>\n"


def test_token_ids_concatenate_to_the_whole_conversation(tokenizer):
    setup_tokenizer(tokenizer, get_template("chat-ml"), data_conf("chat-ml"))
    pair = tokenize_pair(ROW, tokenizer, max_prompt_length=None)
    whole_chosen = tokenizer.apply_chat_template(ROW["prompt_messages"] + ROW["chosen_messages"], tokenize=False)
    assert pair["prompt_ids"] + pair["chosen_ids"] == tokenizer(whole_chosen, add_special_tokens=False)["input_ids"]
    assert tokenizer.decode(pair["rejected_ids"]) == "Quellton.<|im_end|>\n"


def test_long_prompts_keep_their_end_and_bos():
    assert truncate_prompt([1, 10, 11, 12, 13, 14], 4, bos_token_id=1) == [1, 12, 13, 14]
    assert truncate_prompt([10, 11, 12], 2, bos_token_id=1) == [11, 12]
    assert truncate_prompt([1, 10], 4, bos_token_id=1) == [1, 10]
    assert truncate_prompt([1, 10, 11], None, bos_token_id=1) == [1, 10, 11]


@pytest.mark.parametrize(
    ("row", "reason"),
    [
        (
            {"prompt_messages": ROW["prompt_messages"], "chosen_messages": ROW["chosen_messages"]},
            "missing ['rejected_messages']",
        ),
        (dict(ROW, chosen_messages=[{"role": "user", "content": "x"}]), "'chosen_messages' has no assistant message"),
        (dict(ROW, rejected_messages=[]), "'rejected_messages' must be a non-empty list"),
        (dict(ROW, prompt_messages=[{"role": "bot", "content": "x"}]), "prompt_messages[0].role is 'bot'"),
    ],
)
def test_bad_pairs_are_reported_with_line(tmp_path, row, reason):
    path = tmp_path / "pairs.jsonl"
    path.write_text(json.dumps(ROW) + "\n" + json.dumps(row) + "\n")
    with pytest.raises(DataError) as error:
        read_rows(str(path), dpo_row_problem)
    assert error.value.problems[0].startswith(f"{path}:2: ") and reason in error.value.problems[0]


def test_kto_rows_are_pairs_or_labelled_completions():
    unpaired = {"prompt_messages": ROW["prompt_messages"], "completion_messages": ROW["chosen_messages"], "label": True}
    assert kto_row_problem(unpaired) is None
    assert kto_row_problem(ROW) is None
    assert "'label' must be true" in kto_row_problem(dict(unpaired, label="yes"))
    assert "missing ['label']" in kto_row_problem({k: v for k, v in unpaired.items() if k != "label"})


def test_identical_chosen_and_rejected_is_refused():
    assert "are identical" in dpo_row_problem(dict(ROW, rejected_messages=ROW["chosen_messages"]))
    assert "are identical" in kto_row_problem(dict(ROW, rejected_messages=ROW["chosen_messages"]))


@pytest.mark.parametrize(
    ("row", "problem"),
    [
        (ROW, None),
        (
            dict(ROW, prompt_messages=[*ROW["prompt_messages"], {"role": "assistant", "content": "Hm."}]),
            "'prompt_messages' must end with a user message for the 'mistral-with-system' chat template",
        ),
        (
            dict(ROW, rejected_messages=[{"role": "assistant", "content": "a"}, {"role": "assistant", "content": "b"}]),
            "rejected_messages[1] has role 'assistant' where 'user' must come",
        ),
    ],
)
def test_preference_rows_follow_the_templates_role_order(row, problem):
    check = preference_row_checker("dpo", data_conf("mistral-with-system"))
    found = check(row)
    assert found == problem if problem is None else found.startswith(problem)
    assert preference_row_checker("dpo", data_conf("chat-ml"))(row) is None


def test_kto_data_report_counts_tokens_as_kto_tokenizes(tokenizer):
    """60 pairs (two examples each) + 20 unpaired rows, 10% split off: the report counts every training example's
    prompt + completion tokens, and its completion tokens as trained."""
    from finetuning.config.data import ChatTrainValidConfig
    from finetuning.data.preference import build_kto_datasets
    from tests.conftest import REPO

    data = REPO / "examples" / "data"
    conf = ChatTrainValidConfig(
        training_data={
            "type": "CONCATENATION",
            "datasets": [{"path": str(data / "preferences.jsonl")}, {"path": str(data / "kto-unpaired.jsonl")}],
        },
        validation_data={"type": "AUTO_SPLIT", "ratio": 0.1},
        chat_template_name="chat-ml",
    )
    setup_tokenizer(tokenizer, get_template("chat-ml"), conf)
    train, validation, report = build_kto_datasets(conf, tokenizer, seed=42)
    assert report.train_examples + report.eval_examples == 140
    tokens = trained = 0
    for example in train:
        prompt, completion = split_prompt(example["prompt"], example["completion"], tokenizer)
        completion_ids = tokenizer(prompt + completion, add_special_tokens=False)["input_ids"]
        tokens += len(completion_ids)
        trained += len(completion_ids) - len(tokenizer(prompt, add_special_tokens=False)["input_ids"])
    assert (report.train_tokens, report.trained_tokens) == (tokens, trained)
    assert 0 < report.trained_tokens < report.train_tokens
