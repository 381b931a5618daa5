"""`data_conf.default_system_message` (issue 15, D3): put first into every conversation that has no system message
(chat-like SFT rows and the prompts of preference rows), token by token; a template that refuses system messages
still refuses it, at the data line."""

from __future__ import annotations

import pytest

from finetuning.data.preference import build_dpo_datasets
from finetuning.data.readers import DataError
from finetuning.data.templates import get_template
from finetuning.model.tokenizer import setup_tokenizer
from tests.conftest import write_jsonl
from tests.data.test_columns_roles import data_conf, sft_examples
from tests.data.test_formats import chat_ml, prompt_then_completion

SYSTEM = "Answer in one word."
NO_SYSTEM = {"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Yo"}]}
OWN_SYSTEM = {
    "messages": [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Capital?"},
        {"role": "assistant", "content": "Yorren."},
    ]
}


def test_added_where_a_conversation_has_none(tmp_path, tokenizer):
    path = write_jsonl(tmp_path / "m.jsonl", [NO_SYSTEM, OWN_SYSTEM])
    examples, _ = sft_examples(tokenizer, data_conf(path, default_system_message=SYSTEM))
    assert examples == [
        chat_ml(tokenizer, "Hi", "Yo", system=SYSTEM),
        chat_ml(tokenizer, "Capital?", "Yorren.", system="Be brief."),  # its own is kept
    ]


def test_sharegpt_rows_get_it_and_text_rows_do_not(tmp_path, tokenizer):
    share = write_jsonl(
        tmp_path / "s.jsonl", [{"conversations": [{"from": "human", "value": "Hi"}, {"from": "gpt", "value": "Yo"}]}]
    )
    (example,), _ = sft_examples(tokenizer, data_conf(share, {"format": "sharegpt"}, default_system_message=SYSTEM))
    assert example == chat_ml(tokenizer, "Hi", "Yo", system=SYSTEM)
    texts = write_jsonl(tmp_path / "pc.jsonl", [{"prompt": "Q: Hi\nA: ", "completion": "Yo"}])
    conf = data_conf(texts, {"format": "prompt_completion"}, default_system_message=SYSTEM)
    (example,), _ = sft_examples(tokenizer, conf)
    assert example == prompt_then_completion(tokenizer, "Q: Hi\nA: ", "Yo")  # no chat template, no system turn


def test_a_template_that_refuses_system_messages_still_refuses_it(tmp_path, tokenizer):
    refusing = (
        "{{ bos_token }}{% for m in messages %}{% if m['role'] == 'system' %}"
        "{{ raise_exception('System role not supported') }}{% endif %}"
        "{{ m['role'] + ': ' + m['content'] + eos_token }}{% endfor %}"
        "{% if add_generation_prompt %}{{ 'assistant: ' }}{% endif %}"
    )
    path = write_jsonl(tmp_path / "m.jsonl", [NO_SYSTEM, OWN_SYSTEM])
    conf = data_conf(path, template="keep-original", chat_template_jinja=refusing, default_system_message=SYSTEM)
    with pytest.raises(DataError) as error:
        sft_examples(tokenizer, conf)
    refusal = "the chat template refuses the roles ['system', 'user', 'assistant']: System role not supported"
    assert error.value.problems == [
        f"{path}:1: {refusal} (with data_conf.default_system_message put first)",
        f"{path}:2: {refusal}",  # the row's own system message: no note
    ]


def test_preference_prompts_get_it(tmp_path, tokenizer):
    rows = [
        {"prompt": "Capital?", "chosen": "Yorren.", "rejected": "Quellton."},
        {"prompt": "River?", "chosen": "Vasren.", "rejected": "None.", "system": "Be brief."},
    ]
    path = write_jsonl(tmp_path / "p.jsonl", rows)
    conf = data_conf(path, {"format": "prompt_chosen_rejected"}, default_system_message=SYSTEM)
    setup_tokenizer(tokenizer, get_template("chat-ml"), conf)
    train, _, _ = build_dpo_datasets(conf, 256, None, tokenizer)

    def ids(text: str) -> list[int]:
        return tokenizer(text, add_special_tokens=False)["input_ids"]

    head = "<s><|im_start|>system\n{}<|im_end|>\n<|im_start|>user\n{}<|im_end|>\n<|im_start|>assistant\n"
    assert train["prompt_ids"] == [ids(head.format(SYSTEM, "Capital?")), ids(head.format("Be brief.", "River?"))]
    assert train["chosen_ids"] == [ids("Yorren.<|im_end|>\n"), ids("Vasren.<|im_end|>\n")]
