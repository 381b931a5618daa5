"""`data_conf.chat_template_jinja` (issue 15, D6): a custom Jinja chat template replaces the tokenizer's own, its
assistant turns are found and masked as keep-original does (token by token), it is saved with the tokenizer, and a
template that does not parse, or a named template beside it, is a config error at its key."""

from __future__ import annotations

import pytest

from finetuning.config.loading import ConfigError, load_any_config
from finetuning.data.templates import Markers, get_template
from finetuning.model.tokenizer import setup_tokenizer
from tests.conftest import sft_config, write_jsonl, write_yaml
from tests.data.test_columns_roles import data_conf, sft_examples
from tests.data.test_formats import expected

CUSTOM = (
    "{{ bos_token }}{% for m in messages %}<{{ m['role'] }}>{{ m['content'] }}</{{ m['role'] }}>\n{% endfor %}"
    "{% if add_generation_prompt %}<assistant>{% endif %}"
)
ROWS = [
    {"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Yo"}]},
    {
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Capital?"},
            {"role": "assistant", "content": "Yorren."},
            {"role": "user", "content": "River?"},
            {"role": "assistant", "content": "Vasren."},
        ]
    },
]


def test_custom_template_is_installed_and_masked_as_keep_original(tmp_path, tokenizer):
    conf = data_conf(write_jsonl(tmp_path / "m.jsonl", ROWS), template="keep-original", chat_template_jinja=CUSTOM)
    examples, _ = sft_examples(tokenizer, conf)
    assert tokenizer.chat_template == CUSTOM
    first = expected(tokenizer, [("<s><user>Hi</user>\n<assistant>", False), ("Yo</assistant>", True), ("\n", False)])
    second = expected(
        tokenizer,
        [
            ("<s><system>Be brief.</system>\n<user>Capital?</user>\n<assistant>", False),
            ("Yorren.</assistant>", True),
            ("\n<user>River?</user>\n<assistant>", False),
            ("Vasren.</assistant>", True),
            ("\n", False),
        ],
    )
    assert examples == [first, second]


def test_markers_come_from_the_custom_template_and_it_is_saved(tmp_path, tokenizer):
    from transformers import AutoTokenizer

    conf = data_conf(tmp_path / "unused.jsonl", template=None, chat_template_jinja=CUSTOM)
    assert conf.chat_template_name == "keep-original"  # implied
    markers, added = setup_tokenizer(tokenizer, get_template(conf.chat_template_name), conf)
    assert (markers, added) == (Markers("<assistant>", "</assistant>"), [])
    tokenizer.save_pretrained(tmp_path / "saved")
    assert AutoTokenizer.from_pretrained(tmp_path / "saved").chat_template == CUSTOM


def test_a_template_with_generation_blocks_parses(tmp_path):
    """transformers' {% generation %} tag (assistant masks) and loop controls are part of its template language."""
    template = (
        "{% for m in messages %}{% if m['role'] == 'assistant' %}{% generation %}{{ m['content'] }}"
        "{% endgeneration %}{% else %}{{ m['content'] }}{% endif %}{% if loop.index > 9 %}{% break %}{% endif %}"
        "{% endfor %}"
    )
    assert data_conf(tmp_path / "x.jsonl", template=None, chat_template_jinja=template).chat_template_jinja == template


@pytest.mark.parametrize(
    ("data_conf_changes", "problem"),
    [
        (
            {"chat_template_jinja": "{% for m in messages %}{{ m.content }"},
            "data_conf.chat_template_jinja: the template does not parse: unexpected '}' (line 1)",
        ),
        (
            {"chat_template_jinja": CUSTOM, "chat_template_name": "chat-ml"},
            "data_conf: chat_template_jinja replaces the named template, but chat_template_name is 'chat-ml'",
        ),
        ({"chat_template_jinja": ""}, "data_conf.chat_template_jinja: "),
    ],
)
def test_config_errors(tmp_path, tiny_model_dir, data_conf_changes, problem):
    config = sft_config(tmp_path, tiny_model_dir, data_conf=data_conf_changes)
    if "chat_template_name" not in data_conf_changes:
        del config["data_conf"]["chat_template_name"]
    with pytest.raises(ConfigError) as error:
        load_any_config(write_yaml(tmp_path / "c.yaml", config))
    assert problem in str(error.value), str(error.value)
