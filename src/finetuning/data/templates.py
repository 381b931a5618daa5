"""The named chat templates (`data_conf.chat_template_name`) and the markers that delimit assistant turns.

A template is three things that must agree: the Jinja text stored on the tokenizer (so inference renders prompts
exactly as training did), the assistant start/end markers (used for completions-only masks and, for the end marker,
as the inference stop token), and the special tokens the tokenizer must know (vocabulary expansion).
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import UserError

# Every template begins with bos when the tokenizer has one: the sequence is tokenised without adding special tokens,
# so training and `apply_chat_template` at inference see identical token ids.
_BOS = "{% if bos_token %}{{ bos_token }}{% endif %}"


@dataclass(frozen=True)
class ChatTemplate:
    """A named template; `assistant_end` may be the placeholder EOS, resolved against the tokenizer."""

    name: str
    jinja: str | None  # None: keep the tokenizer's own template
    assistant_start: str | None
    assistant_end: str | None
    added_special_tokens: tuple[str, ...] = ()


EOS = "\x00EOS\x00"  # placeholder for "the tokenizer's eos token" in marker definitions

TEMPLATES: dict[str, ChatTemplate] = {
    "mistral-with-system": ChatTemplate(
        name="mistral-with-system",
        jinja=(
            _BOS + "{% for message in messages %}"
            "{% if message['role'] == 'user' %}{{ '[INST] ' + message['content'] + ' [/INST]' }}"
            "{% elif message['role'] == 'system' %}{{ '<<SYS>>\n' + message['content'] + '\n<</SYS>>\n' }}"
            "{% elif message['role'] == 'assistant' %}{{ message['content'] + eos_token + ' ' }}"
            "{% endif %}{% endfor %}"
        ),
        assistant_start="[/INST]",
        assistant_end=EOS,
    ),
    "chat-ml": ChatTemplate(
        name="chat-ml",
        jinja=(
            _BOS + "{% for message in messages %}"
            "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
            "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
        ),
        assistant_start="<|im_start|>assistant\n",
        assistant_end="<|im_end|>",
        added_special_tokens=("<|im_start|>", "<|im_end|>"),
    ),
    "poro": ChatTemplate(
        name="poro",
        jinja=(
            _BOS + "{% for message in messages %}"
            "{{ '<|' + message['role'] + '|>\n' + message['content'] + eos_token }}"
            "{% endfor %}{% if add_generation_prompt %}{{ '<|assistant|>\n' }}{% endif %}"
        ),
        assistant_start="<|assistant|>\n",
        assistant_end=EOS,
        added_special_tokens=("<|user|>", "<|assistant|>"),
    ),
    "simplified-llama31": ChatTemplate(
        name="simplified-llama31",
        jinja=(
            _BOS + "{% for message in messages %}"
            "{{ '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n' + message['content'] | trim "
            "+ '<|eot_id|>' }}"
            "{% endfor %}{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}"
            "{% endif %}"
        ),
        assistant_start="<|start_header_id|>assistant<|end_header_id|>\n\n",
        assistant_end="<|eot_id|>",
        added_special_tokens=("<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"),
    ),
    "keep-original": ChatTemplate(name="keep-original", jinja=None, assistant_start=None, assistant_end=None),
}


@dataclass(frozen=True)
class Markers:
    """Assistant start/end strings as they appear in rendered text for one tokenizer."""

    assistant_start: str
    assistant_end: str


class TemplateError(UserError):
    """A template cannot be used with this tokenizer (user error, reported without a traceback)."""


def get_template(name: str) -> ChatTemplate:
    try:
        return TEMPLATES[name]
    except KeyError:
        raise TemplateError(f"unknown chat template {name!r}; known: {', '.join(TEMPLATES)}") from None


def resolve_markers(template: ChatTemplate, tokenizer) -> Markers:
    """Turn the template's markers into concrete strings; for keep-original, derive them from the tokenizer's template.

    Deriving (instead of failing, as the original engine did) works by rendering probe conversations: the text the
    generation prompt adds is the start marker, and what follows a known assistant reply is the end marker.
    """
    if template.jinja is not None:
        end = tokenizer.eos_token if template.assistant_end == EOS else template.assistant_end
        if end is None:
            raise TemplateError(
                f"chat template {template.name!r} ends assistant turns with eos, but the tokenizer has none"
            )
        return Markers(template.assistant_start, end)
    if not getattr(tokenizer, "chat_template", None):
        raise TemplateError(
            "chat_template_name is 'keep-original' but the tokenizer has no chat template; choose a named template"
        )
    user = [{"role": "user", "content": "PROBE-QUESTION"}]
    reply = "PROBE-ANSWER"
    without = tokenizer.apply_chat_template(user, tokenize=False)
    with_prompt = tokenizer.apply_chat_template(user, tokenize=False, add_generation_prompt=True)
    full = tokenizer.apply_chat_template(user + [{"role": "assistant", "content": reply}], tokenize=False)
    start = with_prompt[len(without) :] if with_prompt.startswith(without) else ""
    if not start or not full.startswith(with_prompt):
        raise TemplateError(
            "could not derive the assistant start marker from the tokenizer's own chat template "
            "(it has no distinct generation prompt); use a named chat template for completions-only training"
        )
    tail = full[len(with_prompt) :]
    end = tail[tail.index(reply) + len(reply) :].rstrip("\n ") if reply in tail else ""
    if not end:
        raise TemplateError("could not derive the assistant end marker from the tokenizer's own chat template")
    return Markers(start, end)


def render(messages: list[dict], tokenizer, add_generation_prompt: bool = False) -> str:
    """Render a conversation with the chat template installed on the tokenizer (see `model.tokenizer`)."""
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=add_generation_prompt)
