"""Preference row formats (`datasets[].format` of DPO/KTO data), converted to the native preference rows
(data/preference.py: PAIR_KEYS, and KTO's unpaired prompt_messages / completion_messages / label):

- `prompt_chosen_rejected`: strings `prompt`, `chosen`, `rejected` and an optional `system` (axolotl's
  `chatml.intel` / `chatml.icr` / `chatml.prompt_pairs` / `chatml.argilla` rows: question, input or instruction as
  the prompt, chosen_response / rejected_response as the completions, by `columns`).
- `messages_chosen_rejected`: a message list (or a string: the user turn) and `chosen`, `rejected`, each a string,
  one message or a message list whose last message is the completion (axolotl's `chat_template.default` with
  field_messages / field_chosen / field_rejected, e.g. UltraFeedback). Without the message list, chosen and
  rejected are whole conversations that share everything but their last message (axolotl's
  `chat_template.argilla_chat`, argilla/dpo-mix-7k).
- `prompt_completion_label`: strings `prompt`, `completion`, an optional `system`, and a boolean `label`
  (KTO's unpaired rows: axolotl's `llama3.ultra` / `llama3.argilla` / `chatml.intel` KTO types).

Each row is checked in the user's field names (`columns`), so that a problem names the field the file has; the
chat template then renders the converted messages as it renders native rows.
"""

from __future__ import annotations

from collections.abc import Mapping

from ..config.data_rows import COLUMN_DEFAULTS
from .message_fields import MessageFields, json_type

# Where axolotl's preference types read the prompt and completions from, when not from prompt/chosen/rejected.
KNOWN_ALTERNATIVES = {
    "prompt": ("question", "input", "instruction"),
    "chosen": ("chosen_response",),
    "rejected": ("rejected_response",),
}


def _fields(row_format: str, columns: Mapping[str, str]) -> dict[str, str]:
    return {**COLUMN_DEFAULTS[row_format], **columns}


def _missing(row: dict, field: str, part: str) -> str:
    """`missing 'prompt' (keys found: [...])`, with the column setting that reads a field the row does have."""
    hint = next((other for other in KNOWN_ALTERNATIVES.get(part, ()) if other in row), None)
    tail = f"; to read it from '{hint}', set the dataset entry's columns: {{{part}: {hint}}}" if hint else ""
    return f"missing '{field}' (keys found: {sorted(map(str, row))}){tail}"


def _text_problem(row: dict, field: str, part: str, alternative: str | None = None) -> str | None:
    """A required non-empty string field."""
    if field not in row:
        return _missing(row, field, part)
    value = row[field]
    if not isinstance(value, str):
        hint = f" (a message list: use format {alternative})" if alternative and isinstance(value, list) else ""
        return f"'{field}' must be a string, got {json_type(value)}{hint}"
    return f"'{field}' is empty" if not value.strip() else None


def _system_problem(row: dict, field: str) -> str | None:
    value = row.get(field)
    return None if value is None or isinstance(value, str) else f"'{field}' must be a string, got {json_type(value)}"


def _prompt(row: dict, fields: dict[str, str]) -> list[dict]:
    """The prompt string as the user turn, after the row's system message when it has one (null or empty: none)."""
    system = row.get(fields["system"])
    head = [{"role": "system", "content": system}] if isinstance(system, str) and system.strip() else []
    return [*head, {"role": "user", "content": row[fields["prompt"]]}]


def _assistant(text: str) -> list[dict]:
    return [{"role": "assistant", "content": text}]


def _strings_problem(row: dict, fields: dict[str, str], parts: tuple[str, ...], alternative: str) -> str | None:
    """The first problem with the row's string parts, then with its optional system message; `alternative` is the
    format for message lists."""
    problem = next((found for part in parts if (found := _text_problem(row, fields[part], part, alternative))), None)
    return problem or _system_problem(row, fields["system"])


def prompt_chosen_rejected_problem(row: dict, columns: Mapping[str, str]) -> str | None:
    fields = _fields("prompt_chosen_rejected", columns)
    problem = _strings_problem(row, fields, ("prompt", "chosen", "rejected"), "messages_chosen_rejected")
    if problem is None and row[fields["chosen"]] == row[fields["rejected"]]:
        return f"'{fields['chosen']}' and '{fields['rejected']}' are identical, so the pair prefers nothing"
    return problem


def prompt_chosen_rejected_row(row: dict, columns: Mapping[str, str]) -> dict:
    fields = _fields("prompt_chosen_rejected", columns)
    return {
        "prompt_messages": _prompt(row, fields),
        "chosen_messages": _assistant(row[fields["chosen"]]),
        "rejected_messages": _assistant(row[fields["rejected"]]),
    }


def prompt_completion_label_problem(row: dict, columns: Mapping[str, str]) -> str | None:
    fields = _fields("prompt_completion_label", columns)
    problem = _strings_problem(
        row, fields, ("prompt", "completion"), "messages (prompt_messages, completion_messages, label)"
    )
    if problem is None and fields["label"] not in row:
        return _missing(row, fields["label"], "label")
    if problem is None and not isinstance(row[fields["label"]], bool):
        return f"'{fields['label']}' must be true (desirable) or false (undesirable), got {row[fields['label']]!r}"
    return problem


def prompt_completion_label_row(row: dict, columns: Mapping[str, str]) -> dict:
    fields = _fields("prompt_completion_label", columns)
    return {
        "prompt_messages": _prompt(row, fields),
        "completion_messages": _assistant(row[fields["completion"]]),
        "label": row[fields["label"]],
    }


# --- messages_chosen_rejected -------------------------------------------------------------------------------------


class MessagePairs:
    """messages_chosen_rejected rows of one dataset entry (its columns and roles)."""

    def __init__(self, columns: Mapping[str, str], roles: Mapping[str, list[str]] | None):
        fields = _fields("messages_chosen_rejected", columns)
        self.chosen, self.rejected = fields["chosen"], fields["rejected"]
        self.messages = MessageFields.of("messages_chosen_rejected", columns, roles)

    def problem(self, row: dict) -> str | None:
        for field in (self.chosen, self.rejected):
            if field not in row:
                return _missing(row, field, "chosen" if field == self.chosen else "rejected")
        field = self.messages.messages
        if field not in row:
            return self._whole_conversations_problem(row)
        if isinstance(row[field], str):  # a string prompt is the user turn
            if not row[field].strip():
                return f"'{field}' is empty"
        elif problem := self.messages.list_problem(row[field], field):
            return problem
        problem = self._completion_problem(row, self.chosen) or self._completion_problem(row, self.rejected)
        if problem is None and self._completion(row, self.chosen) == self._completion(row, self.rejected):
            return f"'{self.chosen}' and '{self.rejected}' are identical, so the pair prefers nothing"
        return problem

    def _completion_problem(self, row: dict, field: str) -> str | None:
        """chosen/rejected: a string, one message, or a message list whose last message is the completion."""
        value = row[field]
        if isinstance(value, str):
            return f"'{field}' is empty" if not value.strip() else None
        if isinstance(value, dict):
            return self.messages.message_problem(value, field, role="assistant")
        if isinstance(value, list) and value:
            return self.messages.list_problem(value, field) or self.messages.message_problem(
                value[-1], f"{field}[{len(value) - 1}]", role="assistant"
            )
        return f"'{field}' must be a string, a message or a non-empty message list, got {json_type(value)}"

    def _whole_conversations_problem(self, row: dict) -> str | None:
        """No message list: chosen and rejected are whole conversations with the same prompt."""
        for field in (self.chosen, self.rejected):
            value = row[field]
            if not isinstance(value, list) or len(value) < 2:
                return (
                    f"missing '{self.messages.messages}' (keys found: {sorted(map(str, row))}); without it, "
                    f"'{self.chosen}' and '{self.rejected}' must each be a whole conversation (the prompt, then "
                    "the completion as its last message)"
                )
            if problem := self._completion_problem(row, field):
                return problem
        if self.messages.read(row[self.chosen][:-1]) != self.messages.read(row[self.rejected][:-1]):
            return (
                f"'{self.chosen}' and '{self.rejected}' differ before their last message: as whole conversations "
                "they must share the prompt"
            )
        if self._completion(row, self.chosen) == self._completion(row, self.rejected):
            return f"'{self.chosen}' and '{self.rejected}' are identical, so the pair prefers nothing"
        return None

    def _completion(self, row: dict, field: str) -> list[dict]:
        value = row[field]
        if isinstance(value, str):
            return _assistant(value)
        return [self.messages.message(value if isinstance(value, dict) else value[-1])]

    def _prompt(self, row: dict) -> list[dict]:
        field = self.messages.messages
        if field not in row:
            return self.messages.read(row[self.chosen][:-1])
        value = row[field]
        return [{"role": "user", "content": value}] if isinstance(value, str) else self.messages.read(value)

    def row(self, row: dict) -> dict:
        return {
            "prompt_messages": self._prompt(row),
            "chosen_messages": self._completion(row, self.chosen),
            "rejected_messages": self._completion(row, self.rejected),
        }

    def user_names(self, row: dict) -> dict[str, str]:
        """The native row's lists → the fields they come from, for the problems found in the native row."""
        prompt = self.messages.messages if self.messages.messages in row else f"{self.chosen}[:-1]"
        return {"prompt_messages": prompt, "chosen_messages": self.chosen, "rejected_messages": self.rejected}
