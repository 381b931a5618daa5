"""How a dataset entry's rows are read (`datasets[]`): where they come from, their format, and the source field and
role names of formats that can rename them (`columns`, `roles`). The data layer converts each row to the method's
own row shape with these (data/formats.py); only the shape of the settings is checked here."""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from pydantic import Field, ValidationInfo, field_validator

from finetuning.config._base import StrictModel

if TYPE_CHECKING:
    from finetuning.config.data import ChatTrainValidConfig

DatasetFormat = Literal[
    "messages",
    "alpaca",
    "sharegpt",
    "oasst",
    "prompt_completion",
    "text",
    "tokenized",
    "prompt_chosen_rejected",
    "messages_chosen_rejected",
    "prompt_completion_label",
]
# Which formats each method reads: `messages` is each method's native row shape; the rest convert to it.
METHOD_FORMATS = {
    "sft": ("messages", "alpaca", "sharegpt", "oasst", "prompt_completion", "text", "tokenized"),
    "dpo": ("messages", "prompt_chosen_rejected", "messages_chosen_rejected"),
    "kto": ("messages", "prompt_chosen_rejected", "messages_chosen_rejected", "prompt_completion_label"),
}
# `columns`: the source field each part of a row is read from, by default, for the formats that can rename them.
COLUMN_DEFAULTS = {
    "messages": {"messages": "messages", "role": "role", "content": "content"},
    "sharegpt": {"messages": "conversations", "role": "from", "content": "value"},
    "messages_chosen_rejected": {
        "messages": "messages",
        "chosen": "chosen",
        "rejected": "rejected",
        "role": "role",
        "content": "content",
    },
    "prompt_chosen_rejected": {"prompt": "prompt", "chosen": "chosen", "rejected": "rejected", "system": "system"},
    "prompt_completion_label": {"prompt": "prompt", "completion": "completion", "label": "label", "system": "system"},
}
# `roles`: the formats whose rows hold role names of their own
ROLE_FORMATS = ("messages", "sharegpt", "messages_chosen_rejected")
OUR_ROLES = ("system", "user", "assistant")

PATH_DESCRIPTION = (
    "Local path to a JSONL file in the finetuning data format; or a .json (one JSON array), .parquet or .csv file, "
    "a directory written by datasets.save_to_disk, or a Hugging Face Hub dataset id"
)


def _column(description: str):
    """A `columns` key: the name of a source field, or null for the format's own."""
    return Field(None, min_length=1, description=description)


class Columns(StrictModel):
    """The source field each part of a row is read from (`datasets[].columns`), for data written with other field
    names, e.g. axolotl's `field_messages: conversations` and `message_property_mappings: {role: from, content:
    value}`. Which keys apply depends on the format; each defaults to the format's own field name."""

    messages: str | None = _column(
        "messages, sharegpt, messages_chosen_rejected: the field holding the message list (default messages; "
        "sharegpt: conversations)"
    )
    role: str | None = _column("The field of each message holding its role (default role; sharegpt: from)")
    content: str | None = _column("The field of each message holding its text (default content; sharegpt: value)")
    prompt: str | None = _column(
        "prompt_chosen_rejected, prompt_completion_label: the field holding the prompt text (default prompt; e.g. "
        "question, input or instruction)"
    )
    chosen: str | None = _column("Preference pairs: the field holding the preferred completion (default chosen)")
    rejected: str | None = _column("Preference pairs: the field holding the dispreferred completion (default rejected)")
    completion: str | None = _column("prompt_completion_label: the field holding the completion (default completion)")
    label: str | None = _column(
        "prompt_completion_label: the field holding the boolean label, true = desirable (default label)"
    )
    system: str | None = _column(
        "prompt_chosen_rejected, prompt_completion_label: the field holding an optional system message (default "
        "system; absent, null or empty: none)"
    )


FORMAT_DESCRIPTION = (
    "Row format. SFT: messages (chat rows, the default), alpaca (instruction/input/output), sharegpt (conversations "
    "of from/value), oasst (INSTRUCTION/RESPONSE), prompt_completion (prompt/completion), text (raw text, every token "
    "trained: continued pre-training), or tokenized (rows that already hold input_ids and optionally labels, -100 = "
    "not trained, absent = every token trained; trained as given, no template: e.g. the save_to_disk directory of "
    "data_conf.preprocess). DPO/KTO: messages (the native rows: prompt_messages, chosen_messages, rejected_messages; "
    "KTO also prompt_messages, completion_messages, label), prompt_chosen_rejected (strings prompt, chosen, rejected "
    "and an optional system), messages_chosen_rejected (a message list, or a string as the user turn, and chosen, "
    "rejected: each a string, a message or a message list whose last message is the completion; without the message "
    "list, chosen and rejected are whole conversations sharing everything but their last message); KTO only: "
    "prompt_completion_label (strings prompt, completion, an optional system, and a boolean label)."
)


class DatasetSource(StrictModel):
    """Where a dataset's rows come from and how they are written (shared by both dataset entry kinds)."""

    path: str = Field(description=PATH_DESCRIPTION)
    format: DatasetFormat = Field("messages", description=FORMAT_DESCRIPTION)
    columns: Columns | None = Field(
        None,
        description=(
            "The source field names of the row's parts, when they differ from the format's own: for messages and "
            "sharegpt {messages, role, content}; messages_chosen_rejected also {chosen, rejected}; "
            "prompt_chosen_rejected {prompt, chosen, rejected, system}; prompt_completion_label {prompt, completion, "
            "label, system}. With messages, role or content renamed, other keys of a message are ignored."
        ),
    )
    roles: dict[Literal["system", "user", "assistant"], list[str]] | None = Field(
        None,
        description=(
            "messages, sharegpt, messages_chosen_rejected: our role → the role names the data uses for it, e.g. "
            "{user: [human, user], assistant: [gpt, assistant], system: [system]} (axolotl's roles). It replaces "
            "the default (the names themselves; sharegpt: human/user, gpt/assistant, system); a role the mapping "
            "does not name is a data error."
        ),
    )
    name: str | None = Field(None, description="Hub datasets: the configuration (subset) name")
    split: str | None = Field(
        None, description="Hub datasets and saved dataset dicts: the split to read (default train)"
    )
    data_files: str | list[str] | None = Field(None, description="Hub datasets: which files of the repository to read")
    revision: str | None = Field(None, description="Hub datasets: the git revision (branch, tag or commit) to read")

    @field_validator("columns")
    @classmethod
    def _columns_apply(cls, value: Columns | None, info: ValidationInfo) -> Columns | None:
        """A column that the format does not read would be ignored silently: refused, naming those it reads."""
        row_format = info.data.get("format")
        if value is None or row_format is None:
            return value
        known = COLUMN_DEFAULTS.get(row_format, {})
        given = sorted(value.model_fields_set)
        if not known:
            raise ValueError(f"format {row_format} reads fixed fields; columns apply to {', '.join(COLUMN_DEFAULTS)}")
        if unknown := [key for key in given if key not in known]:
            raise ValueError(f"{', '.join(unknown)}: not read by format {row_format} (its columns: {', '.join(known)})")
        return value

    @field_validator("roles")
    @classmethod
    def _roles_apply(cls, value: dict[str, list[str]] | None, info: ValidationInfo) -> dict[str, list[str]] | None:
        row_format = info.data.get("format")
        if value is None or row_format is None:
            return value
        if row_format not in ROLE_FORMATS:
            raise ValueError(
                f"format {row_format} has no role names of its own; roles apply to {', '.join(ROLE_FORMATS)}"
            )
        if not value:
            raise ValueError("names no role; give e.g. {user: [human], assistant: [gpt]}, or drop roles")
        seen: dict[str, str] = {}
        for ours, names in value.items():
            if not names or any(not isinstance(name, str) or not name for name in names):
                raise ValueError(f"{ours}: must be a non-empty list of role names as the data writes them")
            for name in names:
                if name in seen and seen[name] != ours:
                    raise ValueError(f"{name!r} is mapped to both {seen[name]} and {ours}; map it to one role")
                seen[name] = ours
        return value


def format_method_problems(data_conf: ChatTrainValidConfig, method: str) -> list[str]:
    """Dataset entries whose format the method does not read (each at its key): an alpaca file is no preference
    data, a pair format no SFT data, unpaired rows no DPO data. Native preference rows (format messages) are the
    method's own shape, so columns and roles do not apply to them."""
    problems = []
    for where in ("training_data", "validation_data"):
        for index, dataset in enumerate(getattr(getattr(data_conf, where), "datasets", [])):
            key = f"data_conf.{where}.datasets[{index}]"
            if dataset.format not in METHOD_FORMATS[method]:
                readers = [name.upper() for name, formats in METHOD_FORMATS.items() if dataset.format in formats]
                problems.append(
                    f"{key}.format: {dataset.format!r} applies to {'/'.join(readers)} data; {method} reads "
                    f"{', '.join(METHOD_FORMATS[method])}"
                )
            elif method != "sft" and dataset.format == "messages" and (dataset.columns or dataset.roles):
                field = "columns" if dataset.columns else "roles"
                problems.append(
                    f"{key}.{field}: {method} rows of format messages have fixed fields (prompt_messages, ...); "
                    "for a message list with chosen and rejected under other names use format "
                    "messages_chosen_rejected"
                )
    return problems
