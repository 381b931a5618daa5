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
- DPO/KTO rows (`prompt_messages`, `chosen_messages`, ...; data/preference.py): the native preference rows, as
  written (format messages) or converted from the preference formats (data/preference_formats.py).

A dataset entry's `columns` and `roles` rename the fields and role names of chat-like and preference formats
(data/message_fields.py), and `data_conf.default_system_message` starts each conversation that has no system
message: `Conversion` holds all of it for one entry.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from ..config.data_rows import COLUMN_DEFAULTS
from ..errors import UserError, did_you_mean
from . import preference_formats
from .message_fields import MessageFields, json_type
from .tokenize import IGNORE_INDEX

__all__ = ["Conversion", "conversion_of", "json_type"]


ALPACA_PROMPT_WITH_INPUT = (
    "Below is an instruction that describes a task, paired with an input that provides further context. Write a "
    "response that appropriately completes the request.\n\n### Instruction:\n{instruction}\n\n### Input:\n{input}"
    "\n\n### Response:\n"
)
ALPACA_PROMPT = (
    "Below is an instruction that describes a task. Write a response that appropriately completes the request."
    "\n\n### Instruction:\n{instruction}\n\n### Response:\n"
)


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


# format → (its row problem, its converter to a row kind); `text`, mapped message lists and preference rows below
CONVERTERS = {
    "alpaca": (alpaca_problem, alpaca_texts),
    "oasst": (oasst_problem, oasst_texts),
    "prompt_completion": (prompt_completion_problem, prompt_completion_row),
    "tokenized": (tokenized_problem, tokenized_row),
}
# preference formats → (row problem, converter), each given the entry's columns (data/preference_formats.py)
PREFERENCE_CONVERTERS = {
    "prompt_chosen_rejected": (
        preference_formats.prompt_chosen_rejected_problem,
        preference_formats.prompt_chosen_rejected_row,
    ),
    "prompt_completion_label": (
        preference_formats.prompt_completion_label_problem,
        preference_formats.prompt_completion_label_row,
    ),
}
TOKENIZED_COLUMNS = ("input_ids", "labels")
PROMPT_TEXT_COLUMNS = ("prompt_text", "completion_text")
PLAIN_TEXT_FORMATS = ("text", "alpaca", "oasst", "tokenized")


class Conversion:
    """How the rows of one dataset entry become pipeline rows: its format with the entry's `columns` and `roles`,
    and the data section's `default_system_message`. A format's own problems are found in the row as written (the
    user's field names); the converted row is then checked by the method (messages, pairs), and problems found
    there name the user's fields too (`in_user_terms`)."""

    def __init__(
        self,
        row_format: str,
        columns: Mapping[str, str] | None = None,
        roles: Mapping[str, list[str]] | None = None,
        system_message: str | None = None,
    ):
        self.format, self.columns, self.roles = row_format, dict(columns or {}), roles
        self.system_message = system_message
        mapped = row_format == "sharegpt" or (row_format == "messages" and bool(columns or roles))
        self.fields = MessageFields.of(row_format, self.columns, roles) if mapped else None
        pairs = row_format == "messages_chosen_rejected"
        self.pairs = preference_formats.MessagePairs(self.columns, roles) if pairs else None

    def problem(self, row: dict) -> str | None:
        """What keeps the row from being converted, or None (native rows are checked as they are, by the method)."""
        if self.format == "text":
            return text_problem(row)
        if self.fields is not None:
            field = self.fields.messages
            return _missing(row, field) if field not in row else self.fields.list_problem(row[field], field)
        if self.pairs is not None:
            return self.pairs.problem(row)
        if self.format in PREFERENCE_CONVERTERS:
            return PREFERENCE_CONVERTERS[self.format][0](row, self.columns)
        return CONVERTERS[self.format][0](row) if self.format in CONVERTERS else None

    def convert(self, row: dict) -> dict:
        """The (valid) row as the pipeline reads it: `{"messages"}`, `{"prompt_text", "completion_text"}`,
        `{"text"}`, `{"input_ids", "labels"}` or a native preference row (module docstring)."""
        if self.format == "text":
            return {"text": row["text"]}
        if self.fields is not None:
            return {"messages": self.fields.read(row[self.fields.messages])}
        if self.pairs is not None:
            return self.pairs.row(row)
        if self.format in PREFERENCE_CONVERTERS:
            return PREFERENCE_CONVERTERS[self.format][1](row, self.columns)
        return CONVERTERS[self.format][1](row) if self.format in CONVERTERS else row

    def plain_text(self, row: dict) -> bool:
        """Whether the (valid) row is tokenised without a chat template, so no conversation check applies to it."""
        if self.format in PLAIN_TEXT_FORMATS:
            return True
        return (
            self.format == "prompt_completion" and isinstance(row["prompt"], str) and isinstance(row["completion"], str)
        )

    def with_system_message(self, row: dict) -> dict:
        """The converted row with `default_system_message` first in its conversation (a preference row's prompt),
        unless that starts with a system message already; rows without a conversation as they are."""
        if not self.system_message:
            return row
        for key in ("messages", "prompt_messages"):
            messages = row.get(key)
            if isinstance(messages, list):
                if messages and isinstance(messages[0], dict) and messages[0].get("role") == "system":
                    return row
                return {**row, key: [{"role": "system", "content": self.system_message}, *messages]}
        return row

    def in_user_terms(self, problem: str, row: dict) -> str:
        """A problem of the converted row, with its lists named as the fields of the row as written."""
        if self.fields is not None:
            names = {"messages": self.fields.messages}
        elif self.pairs is not None:
            names = self.pairs.user_names(row)
        elif self.format in PREFERENCE_CONVERTERS:
            fields = {**COLUMN_DEFAULTS[self.format], **self.columns}
            names = {
                f"{part}_messages": fields[part]
                for part in ("prompt", "chosen", "rejected", "completion")
                if part in fields
            }
        else:
            return problem
        for native, written in names.items():
            problem = re.sub(rf"(?<![\w]){native}(?=[\['])", written, problem)
        return problem

    def describe(self) -> dict:
        """What decides the converted rows, as JSON (the checks' outcome is kept under it: readers.data_problems)."""
        return {"format": self.format, "columns": self.columns, "roles": self.roles, "system": self.system_message}


def conversion_of(entry, system_message: str | None = None) -> Conversion:
    """The Conversion of a config dataset entry (a bare path: messages rows)."""
    columns = getattr(entry, "columns", None)
    given = columns.model_dump(exclude_none=True) if columns is not None else {}
    return Conversion(getattr(entry, "format", "messages"), given, getattr(entry, "roles", None), system_message)


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
