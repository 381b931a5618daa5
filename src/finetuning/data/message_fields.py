"""Message lists written with other field and role names (`datasets[].columns`, `datasets[].roles`): sharegpt's
`{from, value}` turns, axolotl's `field_messages` / `message_property_mappings` / `roles`. Each list is checked in the
user's own names (so a problem names the field the file has), then read into our `{role, content}` messages.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from ..config.data_rows import COLUMN_DEFAULTS
from ..errors import did_you_mean

# Roles whose text must not be empty: an empty turn trains the model to answer nothing (or to nothing).
ROLES_WITH_TEXT = ("user", "assistant")
# sharegpt speakers → our roles (human/gpt as written by ShareGPT; user/assistant as many exports write them)
SHAREGPT_ROLES = {"system": "system", "human": "user", "gpt": "assistant", "user": "user", "assistant": "assistant"}
IDENTITY_ROLES = {"system": "system", "user": "user", "assistant": "assistant"}


def json_type(value) -> str:
    """The JSON name of a parsed value's type (what the user wrote), not Python's."""
    names = {dict: "object", list: "array", str: "string", bool: "boolean", int: "number", float: "number"}
    return "null" if value is None else names.get(type(value), type(value).__name__)


def source_roles(roles: Mapping[str, list[str]] | None, row_format: str) -> dict[str, str]:
    """`datasets[].roles` (our role → the data's names) as data name → our role; without it, the format's own."""
    if roles is None:
        return dict(SHAREGPT_ROLES if row_format == "sharegpt" else IDENTITY_ROLES)
    return {name: ours for ours, names in roles.items() for name in names}


@dataclass(frozen=True)
class MessageFields:
    """How one dataset entry writes its messages: the row field holding the list, each message's role and content
    fields, and its role names (data name → our role)."""

    messages: str
    role: str
    content: str
    roles: Mapping[str, str]

    @classmethod
    def of(cls, row_format: str, columns: Mapping[str, str], roles: Mapping[str, list[str]] | None) -> MessageFields:
        """The entry's fields: its `columns`, else the format's defaults (config/data_rows.py COLUMN_DEFAULTS)."""
        names = {**COLUMN_DEFAULTS[row_format], **columns}
        return cls(names["messages"], names["role"], names["content"], source_roles(roles, row_format))

    def message_problem(self, message, where: str, role: str | None = None) -> str | None:
        """A problem with one message (`where` names it as the file does, e.g. `conversations[2]`), or None; with
        `role`, the message must map to that role."""
        if not isinstance(message, dict) or self.role not in message or self.content not in message:
            return f"{where} must be an object with '{self.role}' and '{self.content}'"
        name, text = message[self.role], message[self.content]
        if not isinstance(name, str) or name not in self.roles:
            close = did_you_mean(name, self.roles) if isinstance(name, str) else ""
            return (
                f"{where}.{self.role} is {name!r}{close} (roles known: {', '.join(self.roles)}; map other names to "
                "system, user or assistant with the dataset entry's roles)"
            )
        if role is not None and self.roles[name] != role:
            return f"{where}.{self.role} is {name!r}, which is {self.roles[name]}; a completion is an {role} message"
        if not isinstance(text, str):
            return f"{where}.{self.content} must be a string, got {json_type(text)}"
        if self.roles[name] in ROLES_WITH_TEXT and not text.strip():
            return f"{where}.{self.content} is empty; {self.roles[name]} messages need text"
        return None

    def list_problem(self, messages, field: str) -> str | None:
        """A problem with a message list held in row field `field`, or None."""
        if not isinstance(messages, list) or not messages:
            return f"'{field}' must be a non-empty list of {{{self.role}, {self.content}}} messages"
        return next(
            (problem for index, m in enumerate(messages) if (problem := self.message_problem(m, f"{field}[{index}]"))),
            None,
        )

    def message(self, message: dict) -> dict:
        """One checked message as ours; its other keys are not read."""
        return {"role": self.roles[message[self.role]], "content": message[self.content]}

    def read(self, messages: list[dict]) -> list[dict]:
        return [self.message(message) for message in messages]
