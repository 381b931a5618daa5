"""The named chat templates (`data_conf.chat_template_name`) and the markers that delimit assistant turns.

A template is three things that must agree: the Jinja text stored on the tokenizer (so inference renders prompts
exactly as training did), the assistant start/end markers (used for completions-only masks and, for the end marker,
as the inference stop token), and the special tokens the tokenizer must know (vocabulary expansion).
"""

from __future__ import annotations

from collections.abc import Callable
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
    # Assistant turns without a role marker of their own: user and assistant turns must alternate (see
    # `role_order_problem`), or the rendered text says something else than the data.
    alternating: bool = False


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
        alternating=True,
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
    """Assistant start/end strings as they appear in rendered text for one tokenizer. `assistant_start` is None for a
    model's own template without a generation prompt: plain training needs only the end marker (the inference stop),
    completions-only masking needs the start too (`completions_markers`)."""

    assistant_start: str | None
    assistant_end: str


NO_START_MARKER = (
    "sft_args.train_on_completions_only: could not derive the assistant start marker from the tokenizer's own chat "
    "template (it has no distinct generation prompt); use a named chat template for completions-only training"
)


def completions_markers(markers: Markers) -> Markers:
    """The markers, when they can delimit assistant turns for a completions-only mask; else the user error."""
    if markers.assistant_start is None:
        raise TemplateError(NO_START_MARKER)
    return markers


class TemplateError(UserError):
    """A template cannot be used with this tokenizer (user error, reported without a traceback)."""


class TemplateRefusal(TemplateError):
    """The chat template refused to render a conversation; `refusal` is the template's own words."""

    def __init__(self, refusal: str):
        super().__init__(f"data_conf.chat_template_name: the chat template refuses a conversation: {refusal}")
        self.refusal = refusal


def get_template(name: str) -> ChatTemplate:
    try:
        return TEMPLATES[name]
    except KeyError:
        raise TemplateError(f"unknown chat template {name!r}; known: {', '.join(TEMPLATES)}") from None


def resolve_markers(template: ChatTemplate, tokenizer) -> Markers:
    """Turn the template's markers into concrete strings; for keep-original, derive them from the tokenizer's template.

    Deriving (instead of failing, as the original engine did) works by rendering probe conversations: the text the
    generation prompt adds is the start marker, and what follows a known assistant reply is the end marker. A
    template without a generation prompt gives no start marker (None): enough for training on every token.
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
    if start and full.startswith(with_prompt):
        prefix = with_prompt
    elif full.startswith(without):  # no (usable) generation prompt: the reply follows the user turn directly
        start, prefix = None, without
    else:  # the user turn renders differently once a reply follows: no known place where the reply starts
        raise TemplateError("could not derive the assistant end marker from the tokenizer's own chat template")
    tail = full[len(prefix) :]
    end = tail[tail.index(reply) + len(reply) :].rstrip("\n ") if reply in tail else ""
    if not end:
        raise TemplateError("could not derive the assistant end marker from the tokenizer's own chat template")
    return Markers(start, end)


def role_order_problem(
    messages: list[dict], template: ChatTemplate, field: str = "messages", first: str = "user"
) -> str | None:
    """A role order that an `alternating` template cannot render faithfully, or None.

    mistral-with-system writes an assistant turn as bare text after `[/INST]`: a second user turn in a row would be
    trained on as if the assistant had said it, and a second assistant turn would not be trained on at all. So after
    one optional leading system message, turns alternate user/assistant starting with `first`.
    """
    if not template.alternating:
        return None
    expected = first
    for index, message in enumerate(messages):
        role = message["role"]
        if role == "system" and index == 0 and first == "user":
            continue
        if role != expected:
            return (
                f"{field}[{index}] has role {role!r} where {expected!r} must come: the {template.name!r} chat "
                "template needs user and assistant turns to alternate (one system message may come first)"
            )
        expected = "assistant" if role == "user" else "user"
    return None


def template_refusal(tokenizer) -> Callable[[list[dict]], str | None]:
    """For a tokenizer's own template (keep-original): the problem with a conversation's role order, or None.

    Many model templates refuse some role orders (e.g. "Conversation roles must alternate"). That refusal should name
    the data line, not surface while tokenising; templates refuse by role order, so each distinct order is rendered
    once, with placeholder text.
    """
    verdicts: dict[tuple[str, ...], str | None] = {}

    def problem(messages: list[dict]) -> str | None:
        roles = tuple(message["role"] for message in messages)
        if roles not in verdicts:
            try:
                render([{"role": role, "content": "text"} for role in roles], tokenizer)
                verdicts[roles] = None
            except TemplateRefusal as error:
                verdicts[roles] = f"the chat template refuses the roles {list(roles)}: {error.refusal}"
        return verdicts[roles]

    return problem


def render(messages: list[dict], tokenizer, add_generation_prompt: bool = False) -> str:
    """Render a conversation with the chat template installed on the tokenizer (see `model.tokenizer`).

    A template that refuses the conversation (`raise_exception` in its Jinja text) is a user error, not a traceback.
    """
    import jinja2

    try:
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=add_generation_prompt)
    except jinja2.TemplateError as error:
        raise TemplateRefusal(str(error)) from None
