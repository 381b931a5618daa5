"""Each named template renders exactly the expected text, and its markers are the ones training and inference use."""

from __future__ import annotations

import pytest

from finetuning.config.data import ChatTrainValidConfig
from finetuning.data.templates import (
    TemplateError,
    TemplateRefusal,
    get_template,
    render,
    resolve_markers,
    role_order_problem,
    template_refusal,
)
from finetuning.model.tokenizer import setup_tokenizer
from tests.conftest import CONVERSATION

EXPECTED = {
    "mistral-with-system": (
        "<s><<SYS>>\nBe brief.\n<</SYS>>\n[INST] Capital of Tusello? [/INST]Yorren.</s> "
        "[INST] And its river? [/INST]The Vasren.</s> "
    ),
    "chat-ml": (
        "<s><|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nCapital of Tusello?<|im_end|>\n"
        "<|im_start|>assistant\nYorren.<|im_end|>\n<|im_start|>user\nAnd its river?<|im_end|>\n"
        "<|im_start|>assistant\nThe Vasren.<|im_end|>\n"
    ),
    "poro": (
        "<s><|system|>\nBe brief.</s><|user|>\nCapital of Tusello?</s><|assistant|>\nYorren.</s>"
        "<|user|>\nAnd its river?</s><|assistant|>\nThe Vasren.</s>"
    ),
    "simplified-llama31": (
        "<s><|start_header_id|>system<|end_header_id|>\n\nBe brief.<|eot_id|>"
        "<|start_header_id|>user<|end_header_id|>\n\nCapital of Tusello?<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\nYorren.<|eot_id|>"
        "<|start_header_id|>user<|end_header_id|>\n\nAnd its river?<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\nThe Vasren.<|eot_id|>"
    ),
    # the tiny tokenizer's own template (see finetuning.tools.tiny_model)
    "keep-original": (
        "<s>### system:\nBe brief.</s>\n### user:\nCapital of Tusello?</s>\n### assistant:\nYorren.</s>\n"
        "### user:\nAnd its river?</s>\n### assistant:\nThe Vasren.</s>\n"
    ),
}

MARKERS = {
    "mistral-with-system": ("[/INST]", "</s>"),
    "chat-ml": ("<|im_start|>assistant\n", "<|im_end|>"),
    "poro": ("<|assistant|>\n", "</s>"),
    "simplified-llama31": ("<|start_header_id|>assistant<|end_header_id|>\n\n", "<|eot_id|>"),
    "keep-original": ("### assistant:\n", "</s>"),
}


def data_conf(template: str, **extra) -> ChatTrainValidConfig:
    return ChatTrainValidConfig(
        training_data={"type": "CONCATENATION", "datasets": [{"path": "x.jsonl"}]},
        validation_data={"type": "NONE"},
        chat_template_name=template,
        **extra,
    )


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_template_renders_exactly(name, tokenizer):
    markers, _ = setup_tokenizer(tokenizer, get_template(name), data_conf(name))
    assert render(CONVERSATION, tokenizer) == EXPECTED[name]
    assert (markers.assistant_start, markers.assistant_end) == MARKERS[name]


@pytest.mark.parametrize("name", ["chat-ml", "poro", "simplified-llama31"])
def test_template_tokens_are_added_as_atomic_special_tokens(name, tokenizer):
    before = len(tokenizer)
    _, added = setup_tokenizer(tokenizer, get_template(name), data_conf(name))
    assert added == list(get_template(name).added_special_tokens)
    assert len(tokenizer) == before + len(added)
    for token in added:
        assert tokenizer(token, add_special_tokens=False)["input_ids"] == [tokenizer.convert_tokens_to_ids(token)]


def test_existing_extra_special_tokens_are_kept(tokenizer):
    tokenizer.add_special_tokens({"additional_special_tokens": ["<|tool|>"]})
    setup_tokenizer(tokenizer, get_template("chat-ml"), data_conf("chat-ml"))
    assert {"<|tool|>", "<|im_start|>", "<|im_end|>"} <= set(tokenizer.all_special_tokens)


def test_generation_prompt_matches_training_prefix(tokenizer):
    """Inference renders the prompt exactly as the training text began (the classic template mismatch)."""
    setup_tokenizer(tokenizer, get_template("chat-ml"), data_conf("chat-ml"))
    prompt = render(CONVERSATION[:2], tokenizer, add_generation_prompt=True)
    assert EXPECTED["chat-ml"].startswith(prompt)
    assert prompt.endswith("<|im_start|>assistant\n")


def test_keep_original_without_template_is_a_clear_error(tokenizer):
    tokenizer.chat_template = None
    with pytest.raises(TemplateError, match="has no chat template"):
        resolve_markers(get_template("keep-original"), tokenizer)


def test_unknown_template_name():
    with pytest.raises(TemplateError, match="known: mistral-with-system"):
        get_template("chatml")


def turns(*roles: str) -> list[dict]:
    return [{"role": role, "content": "text"} for role in roles]


@pytest.mark.parametrize(
    ("roles", "problem"),
    [
        (("system", "user", "assistant", "user", "assistant"), None),
        (("user", "assistant", "user"), None),
        (("user", "user", "assistant"), "messages[1] has role 'user' where 'assistant' must come"),
        (("user", "assistant", "assistant"), "messages[2] has role 'assistant' where 'user' must come"),
        (("assistant",), "messages[0] has role 'assistant' where 'user' must come"),
        (("user", "assistant", "system"), "messages[2] has role 'system' where 'user' must come"),
    ],
)
def test_mistral_template_needs_alternating_turns(roles, problem):
    found = role_order_problem(turns(*roles), get_template("mistral-with-system"))
    assert found == problem if problem is None else found.startswith(problem)


@pytest.mark.parametrize("name", ["chat-ml", "poro", "simplified-llama31", "keep-original"])
def test_templates_with_role_markers_take_any_order(name):
    assert role_order_problem(turns("user", "user", "assistant", "assistant"), get_template(name)) is None


def test_mistral_renders_a_second_user_turn_inside_the_assistant_span(tokenizer):
    """Why mistral-with-system needs alternation: the text between [/INST] and eos is trained as the answer."""
    setup_tokenizer(tokenizer, get_template("mistral-with-system"), data_conf("mistral-with-system"))
    text = render(turns("user", "user", "assistant"), tokenizer)
    assert text == "<s>[INST] text [/INST][INST] text [/INST]text</s> "


STRICT = (
    "{% for message in messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
    "{{ raise_exception('Conversation roles must alternate') }}{% endif %}{{ message['content'] }}{% endfor %}"
)


def test_a_template_refusal_is_a_user_error(tokenizer):
    tokenizer.chat_template = STRICT
    with pytest.raises(TemplateRefusal) as error:
        render(turns("user", "user"), tokenizer)
    assert error.value.refusal == "Conversation roles must alternate"
    assert error.value.problems == [
        "data_conf.chat_template_name: the chat template refuses a conversation: Conversation roles must alternate"
    ]


def test_template_refusal_is_found_once_per_role_order(tokenizer):
    tokenizer.chat_template = STRICT
    refusal = template_refusal(tokenizer)
    assert refusal(turns("user", "assistant")) is None
    assert refusal(turns("user", "user")) == (
        "the chat template refuses the roles ['user', 'user']: Conversation roles must alternate"
    )


# --- a model template without a generation prompt (keep-original) ---------------------------------------------------

NO_GENERATION_PROMPT = (  # TINY_CHAT_TEMPLATE without its `add_generation_prompt` branch
    "{{ bos_token }}{% for message in messages %}"
    "{{ '### ' + message['role'] + ':\n' + message['content'] + eos_token + '\n' }}{% endfor %}"
)


def test_keep_original_without_generation_prompt_has_an_end_marker_but_no_start(tokenizer):
    tokenizer.chat_template = NO_GENERATION_PROMPT
    markers = resolve_markers(get_template("keep-original"), tokenizer)
    assert (markers.assistant_start, markers.assistant_end) == (None, "</s>")


@pytest.fixture
def model_without_generation_prompt(tmp_path, tiny_model_dir):
    """The tiny model, its tokenizer's own chat template lacking a generation prompt."""
    import shutil

    from transformers import AutoTokenizer

    model_dir = shutil.copytree(tiny_model_dir, tmp_path / "model")
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    tokenizer.chat_template = NO_GENERATION_PROMPT
    tokenizer.save_pretrained(model_dir)
    return model_dir


@pytest.mark.slow
@pytest.mark.parametrize("completions_only", [False, True])
def test_keep_original_without_generation_prompt_trains_on_every_token_only(
    tmp_path, model_without_generation_prompt, completions_only, capsys
):
    """Plain training needs only the end marker; the completions-only mask needs the start marker, which a
    template without a generation prompt cannot give: the same clear refusal as before, not a traceback."""
    from finetuning.cli import main
    from tests.conftest import sft_config, write_yaml

    config = sft_config(
        tmp_path,
        model_without_generation_prompt,
        data_conf={"chat_template_name": "keep-original"},
        sft_args={"train_on_completions_only": completions_only},
        training_args={"max_steps": 2},
    )
    code = main(["sft", str(write_yaml(tmp_path / "c.yaml", config))])
    if completions_only:
        assert code == 2
        assert "sft_args.train_on_completions_only: could not derive the assistant start marker" in (
            capsys.readouterr().err
        )
    else:
        assert code == 0
        assert "| optimizer steps | 2 |" in (tmp_path / "out" / "summary.md").read_text()
