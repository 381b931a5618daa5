"""Row formats of a dataset entry (`datasets[].format`): each chat-like row becomes our `messages` row.

Formats are shared by every dialect (spec: dialects.md rule 6), so an alpaca file trains the same from a native
config as from an axolotl one. A chat-like row (alpaca, sharegpt, oasst, prompt_completion) is turned into
system/user/assistant messages here; the named chat template and completions-only masking then apply unchanged
(data/tokenize.py). A `text` row is raw text for continued pre-training: no template, every token trained.
Prompts follow axolotl's (peer-semantics.md §4): the alpaca prompt text is the user turn, the output the
assistant turn, whose end marker (eos for most templates) is trained with it.
"""

from __future__ import annotations

from ..errors import did_you_mean


def json_type(value) -> str:
    """The JSON name of a parsed value's type (what the user wrote), not Python's."""
    names = {dict: "object", list: "array", str: "string", bool: "boolean", int: "number", float: "number"}
    return "null" if value is None else names.get(type(value), type(value).__name__)


ALPACA_PROMPT_WITH_INPUT = (
    "Below is an instruction that describes a task, paired with an input that provides further context. Write a "
    "response that appropriately completes the request.\n\n### Instruction:\n{instruction}\n\n### Input:\n{input}"
    "\n\n### Response:\n"
)
ALPACA_PROMPT = (
    "Below is an instruction that describes a task. Write a response that appropriately completes the request."
    "\n\n### Instruction:\n{instruction}\n\n### Response:\n"
)
# sharegpt speakers → our roles (human/gpt as written by ShareGPT; user/assistant as many exports write them)
SHAREGPT_ROLES = {"system": "system", "human": "user", "gpt": "assistant", "user": "user", "assistant": "assistant"}


def _missing(row: dict, key: str) -> str:
    """`missing 'instruction' (keys found: [...])`, with the closest key found as a did-you-mean."""
    return f"missing '{key}' (keys found: {sorted(row)}){did_you_mean(key, [str(k) for k in row])}"


def _text_problem(row: dict, key: str, optional: bool = False) -> str | None:
    """The problem with a string field of a row: missing, not a string, or (when required) empty."""
    if key not in row or (optional and row[key] is None):
        return None if optional else _missing(row, key)
    if not isinstance(row[key], str):
        return f"'{key}' must be a string, got {json_type(row[key])}"
    if not optional and not row[key].strip():
        return f"'{key}' is empty"
    return None


def alpaca_messages(row: dict) -> list[dict]:
    """alpaca `{instruction, input?, output}`: the alpaca prompt (with the input paragraph when `input` is not
    empty) as the user turn, `output` as the assistant turn."""
    given = row.get("input") or ""
    template = ALPACA_PROMPT_WITH_INPUT if given.strip() else ALPACA_PROMPT
    prompt = template.format(instruction=row["instruction"], input=given)
    return [{"role": "user", "content": prompt}, {"role": "assistant", "content": row["output"]}]


def alpaca_problem(row: dict) -> str | None:
    return (
        _text_problem(row, "instruction") or _text_problem(row, "input", optional=True) or _text_problem(row, "output")
    )


def oasst_messages(row: dict) -> list[dict]:
    """oasst `{INSTRUCTION, RESPONSE}` (Open Assistant exports): rendered as alpaca without input."""
    return alpaca_messages({"instruction": row["INSTRUCTION"], "output": row["RESPONSE"]})


def oasst_problem(row: dict) -> str | None:
    return _text_problem(row, "INSTRUCTION") or _text_problem(row, "RESPONSE")


def sharegpt_messages(row: dict) -> list[dict]:
    """sharegpt `{conversations: [{from: system|human|gpt, value}]}`: human → user, gpt → assistant."""
    return [{"role": SHAREGPT_ROLES[turn["from"]], "content": turn["value"]} for turn in row["conversations"]]


def sharegpt_problem(row: dict) -> str | None:
    turns = row.get("conversations")
    if "conversations" not in row:
        return _missing(row, "conversations")
    if not isinstance(turns, list) or not turns:
        return "'conversations' must be a non-empty list of {from, value} turns"
    for index, turn in enumerate(turns):
        where = f"conversations[{index}]"
        if not isinstance(turn, dict) or "from" not in turn or "value" not in turn:
            return f"{where} must be an object with 'from' and 'value'"
        if turn["from"] not in SHAREGPT_ROLES:
            close = (
                did_you_mean(str(turn["from"]).lower(), SHAREGPT_ROLES)
                or f"; expected one of {', '.join(SHAREGPT_ROLES)}"
            )
            return f"{where}.from is {turn['from']!r}{close}"
        if not isinstance(turn["value"], str):
            return f"{where}.value must be a string, got {json_type(turn['value'])}"
    return None


def prompt_completion_messages(row: dict) -> list[dict]:
    """prompt_completion `{prompt, completion}` (TRL's prompt-completion rows): the prompt is the user turn, the
    completion the assistant turn; either may also be a list of messages (TRL's conversational form)."""
    prompt, completion = row["prompt"], row["completion"]
    prompt = [{"role": "user", "content": prompt}] if isinstance(prompt, str) else list(prompt)
    completion = [{"role": "assistant", "content": completion}] if isinstance(completion, str) else list(completion)
    return prompt + completion


def prompt_completion_problem(row: dict) -> str | None:
    for key in ("prompt", "completion"):
        if key not in row:
            return _missing(row, key)
        if not isinstance(row[key], str | list):
            return f"'{key}' must be a string or a list of messages, got {json_type(row[key])}"
    return None


def text_problem(row: dict) -> str | None:
    """text `{text}`: raw text for continued pre-training."""
    return _text_problem(row, "text")


CONVERTERS = {
    "alpaca": (alpaca_problem, alpaca_messages),
    "oasst": (oasst_problem, oasst_messages),
    "sharegpt": (sharegpt_problem, sharegpt_messages),
    "prompt_completion": (prompt_completion_problem, prompt_completion_messages),
}


def format_problem(row: dict, row_format: str) -> str | None:
    """What keeps a row of `row_format` from being converted, or None (messages rows are checked as messages)."""
    if row_format == "text":
        return text_problem(row)
    return CONVERTERS[row_format][0](row) if row_format in CONVERTERS else None


def converted_row(row: dict, row_format: str) -> dict:
    """The row as the pipeline reads it: `{"messages": [...]}`, or `{"text": ...}` for raw text."""
    if row_format == "text":
        return {"text": row["text"]}
    if row_format in CONVERTERS:
        return {"messages": CONVERTERS[row_format][1](row)}
    return row


def tokenize_texts(texts: list[str], tokenizer) -> dict:
    """Raw text (format `text`): tokenized with the special tokens the tokenizer adds itself (bos, and eos where it
    adds one), no chat template, every token trained (labels = input_ids). One "assistant turn" each, so the report
    does not count them as examples with nothing to train on."""
    encoding = tokenizer(texts, add_special_tokens=True)
    ids = encoding["input_ids"]
    return {
        "input_ids": ids,
        "labels": [list(row) for row in ids],
        "length": [len(row) for row in ids],
        "assistant_turns": [1] * len(ids),
    }
