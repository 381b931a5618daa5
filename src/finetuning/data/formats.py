"""Row formats of a dataset entry (`datasets[].format`): each row becomes one of three row kinds the tokenizer
step knows (data/tokenize.py).

Formats are shared by every dialect (spec: dialects.md rule 6), so an alpaca file trains the same from a native
config as from an axolotl one. The kinds:
- `{"messages": [...]}`: chat-like rows (messages, sharegpt, prompt_completion with lists of messages) become
  system/user/assistant messages; the named chat template and completions-only masking apply unchanged.
- `{"prompt_text", "completion_text"}`: alpaca, oasst and prompt_completion with string prompt and completion are
  not chat-like, so no chat template: exactly as axolotl (peer-semantics.md §4) and TRL's non-conversational
  prompt-completion render them, prompt + completion + eos, the prompt masked when completions-only.
- `{"text": ...}`: raw text for continued pre-training: no template, every token trained.
- `{"input_ids", "labels"}`: rows tokenized already (format `tokenized`, e.g. what data_conf.preprocess writes):
  trained as given; labels None means every token is trained.
"""

from __future__ import annotations

from ..errors import UserError, did_you_mean, did_you_mean_or_choices
from .tokenize import IGNORE_INDEX


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


def alpaca_texts(row: dict) -> dict:
    """alpaca `{instruction, input?, output}`: axolotl's alpaca prompt (with the input paragraph when `input` is not
    empty), then `output` as the completion."""
    given = row.get("input") or ""
    template = ALPACA_PROMPT_WITH_INPUT if given.strip() else ALPACA_PROMPT
    return {
        "prompt_text": template.format(instruction=row["instruction"], input=given),
        "completion_text": row["output"],
    }


def alpaca_problem(row: dict) -> str | None:
    return (
        _text_problem(row, "instruction") or _text_problem(row, "input", optional=True) or _text_problem(row, "output")
    )


def oasst_texts(row: dict) -> dict:
    """oasst `{INSTRUCTION, RESPONSE}` (Open Assistant exports): rendered as alpaca without input."""
    return alpaca_texts({"instruction": row["INSTRUCTION"], "output": row["RESPONSE"]})


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
            return f"{where}.from is {turn['from']!r}{did_you_mean_or_choices(str(turn['from']), SHAREGPT_ROLES)}"
        if not isinstance(turn["value"], str):
            return f"{where}.value must be a string, got {json_type(turn['value'])}"
    return None


def prompt_completion_row(row: dict) -> dict:
    """prompt_completion `{prompt, completion}` (TRL's prompt-completion rows): two strings are raw text (TRL's
    non-conversational form); otherwise a string prompt is the user turn, a string completion the assistant turn,
    and lists of messages (TRL's conversational form) are the conversation."""
    prompt, completion = row["prompt"], row["completion"]
    if isinstance(prompt, str) and isinstance(completion, str):
        return {"prompt_text": prompt, "completion_text": completion}
    prompt = [{"role": "user", "content": prompt}] if isinstance(prompt, str) else list(prompt)
    completion = [{"role": "assistant", "content": completion}] if isinstance(completion, str) else list(completion)
    return {"messages": prompt + completion}


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


def _int_list_problem(row: dict, key: str) -> str | None:
    """`key` must be a list of ints (true/false are not token ids)."""
    value = row[key]
    if not isinstance(value, list):
        return f"'{key}' must be a list of token ids, got {json_type(value)}"
    for index, item in enumerate(value):
        if not isinstance(item, int) or isinstance(item, bool):
            return f"'{key}'[{index}] must be an integer, got {json_type(item)}"
    return None


def tokenized_problem(row: dict) -> str | None:
    """tokenized `{input_ids, labels?}`: token ids >= 0; labels, when given, one per token, each a token id or -100.
    Other columns (attention_mask, id: what VectorLM's preprocessing writes) are ignored."""
    if "input_ids" not in row:
        return _missing(row, "input_ids")
    if problem := _int_list_problem(row, "input_ids"):
        return problem
    ids = row["input_ids"]
    if not ids:
        return "'input_ids' is empty"
    if (negative := next((token for token in ids if token < 0), None)) is not None:
        return f"'input_ids' holds {negative}: token ids are >= 0"
    if row.get("labels") is None:
        return None
    if problem := _int_list_problem(row, "labels"):
        return problem
    labels = row["labels"]
    if len(labels) != len(ids):
        return f"'labels' has {len(labels)} entries but 'input_ids' {len(ids)}: one label per token"
    if (bad := next((label for label in labels if label < 0 and label != IGNORE_INDEX), None)) is not None:
        return f"'labels' holds {bad}: a label is a token id, or {IGNORE_INDEX} for a token not trained"
    return None


def tokenized_row(row: dict) -> dict:
    return {"input_ids": row["input_ids"], "labels": row.get("labels")}


# format → (its row problem, its converter to a row kind)
CONVERTERS = {
    "alpaca": (alpaca_problem, alpaca_texts),
    "oasst": (oasst_problem, oasst_texts),
    "sharegpt": (sharegpt_problem, lambda row: {"messages": sharegpt_messages(row)}),
    "prompt_completion": (prompt_completion_problem, prompt_completion_row),
    "tokenized": (tokenized_problem, tokenized_row),
}
TOKENIZED_COLUMNS = ("input_ids", "labels")
PROMPT_TEXT_COLUMNS = ("prompt_text", "completion_text")


def format_problem(row: dict, row_format: str) -> str | None:
    """What keeps a row of `row_format` from being converted, or None (messages rows are checked as messages)."""
    if row_format == "text":
        return text_problem(row)
    return CONVERTERS[row_format][0](row) if row_format in CONVERTERS else None


def converted_row(row: dict, row_format: str) -> dict:
    """The row as the pipeline reads it: `{"messages": [...]}`, `{"prompt_text", "completion_text"}`, or
    `{"text": ...}` for raw text (module docstring)."""
    if row_format == "text":
        return {"text": row["text"]}
    if row_format in CONVERTERS:
        return CONVERTERS[row_format][1](row)
    return row


def is_plain_text(row: dict, row_format: str) -> bool:
    """Whether the (valid) row is tokenised without a chat template, so no conversation check applies to it."""
    if row_format in ("text", "alpaca", "oasst", "tokenized"):
        return True
    return row_format == "prompt_completion" and isinstance(row["prompt"], str) and isinstance(row["completion"], str)


def entry_columns(row_format: str, columns: tuple[str, ...]) -> tuple[str, ...]:
    """The dataset columns of an entry's converted rows: a prompt_completion file may hold both string rows and
    message-list rows, so it keeps both kinds' columns (the other kind's are None in each row)."""
    if row_format == "text":
        return ("text",)
    if row_format == "tokenized":
        return TOKENIZED_COLUMNS
    if row_format in ("alpaca", "oasst"):
        return PROMPT_TEXT_COLUMNS
    return columns + PROMPT_TEXT_COLUMNS if row_format == "prompt_completion" else columns


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


def pass_tokenized(input_ids: list[list[int]], labels: list[list[int] | None], tokenizer) -> dict:
    """Rows tokenized already (format `tokenized`): ids as given, labels as given or (absent) a copy of the ids;
    one "assistant turn" each (never an example with nothing to train on). A token id the tokenizer does not have
    would index past the model's embeddings (a crash mid-run on CPU, a device assert on GPU): refused here."""
    vocabulary = len(tokenizer)
    for ids in input_ids:
        if (too_large := max(ids)) >= vocabulary:
            raise UserError(
                f"data_conf: a dataset of format tokenized holds token id {too_large}, but the tokenizer has "
                f"{vocabulary} tokens: the rows were tokenized with another tokenizer; tokenize them with "
                "run_conf.model's tokenizer (e.g. data_conf.preprocess)"
            )
    return {
        "input_ids": input_ids,
        "labels": [list(ids) if given is None else given for ids, given in zip(input_ids, labels, strict=True)],
        "length": [len(ids) for ids in input_ids],
        "assistant_turns": [1] * len(input_ids),
    }


def tokenize_prompt_completions(prompts: list[str], completions: list[str], tokenizer, completions_only: bool) -> dict:
    """Prompt/completion text rows (alpaca, oasst, string prompt_completion): prompt + completion + eos, no chat
    template; with `completions_only` the prompt's tokens get no label, completion and eos are trained.

    Prompt and completion are tokenised separately and concatenated, as axolotl does: the boundary is then exact
    for any tokenizer (a BPE merge across it, e.g. a prompt ending in a space, would make the prompt's own tokens
    no prefix of the whole text's), and the prompt is tokenised as it is at inference, alone. The prompt gets the
    special tokens the tokenizer adds itself (bos, as for `text` rows) less a trailing eos (it does not end the
    text); the completion gets none, then eos unless it already ends with it."""
    eos = tokenizer.eos_token_id
    if eos is None:
        raise UserError(
            "data_conf.training_data.datasets[].format: alpaca, oasst and string prompt_completion rows end with the "
            "tokenizer's eos token, and this tokenizer has none; use a tokenizer with an eos token, or messages rows"
        )
    prompt_ids = tokenizer(prompts, add_special_tokens=True)["input_ids"]
    completion_ids = tokenizer(completions, add_special_tokens=False)["input_ids"]
    out: dict[str, list] = {"input_ids": [], "labels": [], "length": [], "assistant_turns": []}
    for prompt, completion in zip(prompt_ids, completion_ids, strict=True):
        prompt = prompt[:-1] if prompt and prompt[-1] == eos else list(prompt)
        completion = list(completion) if completion and completion[-1] == eos else [*completion, eos]
        masked = [IGNORE_INDEX] * len(prompt) if completions_only else list(prompt)
        out["input_ids"].append(prompt + completion)
        out["labels"].append(masked + completion)
        out["length"].append(len(prompt) + len(completion))
        out["assistant_turns"].append(1)  # the completion: never an example with nothing to train on
    return out
