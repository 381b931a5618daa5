"""axolotl's data keys: the datasets, the validation split, the chat template, sequence length and packing.

`val_set_size` is an automatic split (seeded by axolotl's `seed`), `test_datasets` a validation set of its own.
`chat_template` names axolotl's templates: tokenizer_default is keep-original (the tokenizer's own), chatml is chat-ml,
llama3 is simplified-llama31 (the same text); `jinja` takes chat_template_jinja. For SFT, `sequence_len` (default 512)
is `sft_args.max_seq_length` and `train_on_inputs: false` (the default) trains the completions only; with `rl` it is
the preference trainer's `max_length`.
"""

from __future__ import annotations

from typing import Any

from finetuning.config.dialects.axolotl_common import (
    MISSING,
    AxolotlBuilder,
    as_bool,
    as_str,
    at_least,
    fraction,
    noticed_when,
    one_of,
    option,
    renamed_as,
    set_from,
    unused,
)
from finetuning.config.dialects.axolotl_datasets import translate_entries
from finetuning.config.dialects.builder import Key
from finetuning.errors import did_you_mean

CHAT_TEMPLATES = {"tokenizer_default": "keep-original", "chatml": "chat-ml", "llama3": "simplified-llama31"}
TEMPLATE_NAMES = {"chat-ml": "ChatML", "simplified-llama31": "Llama 3"}
LENGTH_HANDLING = {"drop": "filter", "truncate": "truncate", "raise": "error"}
DEFAULT_SEQUENCE_LEN = 512  # axolotl's
SFT_ONLY = ("sample_packing", "eval_sample_packing", "train_on_inputs", "excess_length_strategy")


def _dataset_list(b: AxolotlBuilder, path: str, value: Any) -> Any:
    if not isinstance(value, list) or not value:
        b.problem(path, f"must be a list of one or more datasets, got {value!r}")
        return MISSING
    return value


def build_data(b: AxolotlBuilder) -> None:
    """datasets / test_datasets / val_set_size → data_conf's inputs; the chat template; the data options."""
    training, templates = translate_entries(b, "datasets", "training_data")
    b.set("data_conf.training_data", {"type": "CONCATENATION", "datasets": training}, source="datasets")
    b.set("data_conf.validation_data", _validation(b, templates))
    b.set("data_conf.missing_pad_token_strategy", "eos-repurpose")  # axolotl pads with eos when there is no pad
    _chat_template(b, templates)
    if b.rl is None:
        _sft_args(b)
    else:
        set_from(b, "training_args.max_length", b.value("sequence_len", DEFAULT_SEQUENCE_LEN), "sequence_len")
        for key in SFT_ONLY:
            if key == "sample_packing" and b.value(key):
                b.problem(key, f"packing applies to SFT; preference training ({b.rl}) trains unpacked pairs")
            elif key != "sample_packing":
                unused(b, [key], f"it applies to SFT, this is rl: {b.rl}")


def _validation(b: AxolotlBuilder, templates: dict[str, str]) -> dict:
    size = b.value("val_set_size", 0)
    if b.given("test_datasets"):
        if size:
            b.problem("val_set_size", "test_datasets and val_set_size cannot both be set (as in axolotl); keep one")
        entries, more = translate_entries(b, "test_datasets", "validation_data")
        templates.update(more)
        b.maps("data_conf.validation_data", "test_datasets")
        return {"type": "CONCATENATION", "datasets": entries}
    if not size:
        return {"type": "NONE"}
    if size >= 1:
        b.problem("val_set_size", f"must be a fraction of the data below 1 (a row count is not supported), got {size}")
        return {"type": "NONE"}
    b.maps("data_conf.validation_data", "val_set_size")
    split = {"type": "AUTO_SPLIT", "ratio": size}
    if b.given("seed"):
        split["seed"] = b.value("seed")
        b.maps("data_conf.validation_data.seed", "seed")
    return split


def _chat_template(b: AxolotlBuilder, implied: dict[str, str]) -> None:
    """The one chat template of the run: chat_template (or chat_template_jinja), or the one the preference types
    render; two that differ are a problem at the dataset's type."""
    choice = b.value("chat_template")
    if b.given("chat_template_jinja"):
        if choice not in (None, "jinja"):
            b.problem("chat_template_jinja", f"applies with chat_template: jinja (or unset), not {choice}")
        b.set("data_conf.chat_template_jinja", b.value("chat_template_jinja"), source="chat_template_jinja")
        for source in implied:
            b.problem(source, "this type renders its own template, not chat_template_jinja; use chat_template.default")
        return
    if choice == "jinja":
        b.problem("chat_template", "jinja needs chat_template_jinja (the template's text)")
        return
    name = CHAT_TEMPLATES.get(choice) if choice is not None else None
    if choice is not None and name is None:
        hint = did_you_mean(choice, CHAT_TEMPLATES) or ""
        b.problem(
            "chat_template",
            f"{choice!r} is not available here{hint}; supported: {', '.join(CHAT_TEMPLATES)}, and jinja with "
            "chat_template_jinja (the template's text, e.g. copied from the model's tokenizer_config.json)",
        )
        return
    source = "chat_template" if choice is not None else None
    for type_path, needed in implied.items():
        if name is None:
            name, source = needed, type_path
        elif needed != name:
            b.problem(
                type_path,
                f"renders the {TEMPLATE_NAMES[needed]} chat template, but the run's chat template is "
                f"{choice or TEMPLATE_NAMES.get(name, name)}; one template per run: align chat_template and the types",
            )
    b.set("data_conf.chat_template_name", name or "keep-original", source=source)


def _sft_args(b: AxolotlBuilder) -> None:
    set_from(b, "sft_args.max_seq_length", b.value("sequence_len", DEFAULT_SEQUENCE_LEN), "sequence_len")
    if b.given("excess_length_strategy"):
        strategy = LENGTH_HANDLING[b.value("excess_length_strategy")]
        b.set("sft_args.length_handling", strategy, source="excess_length_strategy")
    train_on_inputs = b.value("train_on_inputs", False)
    set_from(b, "sft_args.train_on_completions_only", not train_on_inputs, "train_on_inputs")
    if b.value("sample_packing"):
        b.set("sft_args.packing", True, source="sample_packing")
        if b.given("eval_sample_packing"):
            b.set("sft_args.eval_packing", b.value("eval_sample_packing"), source="eval_sample_packing")
    else:
        unused(b, ["eval_sample_packing"], "sample_packing is not on")


DATA_KEYS: tuple[Key, ...] = (
    option(
        "datasets",
        "`data_conf.training_data`: CONCATENATION of the entries (see datasets[] below); required",
        _dataset_list,
    ),
    option(
        "test_datasets",
        "`data_conf.validation_data`: CONCATENATION of the entries (not with val_set_size)",
        _dataset_list,
    ),
    option(
        "val_set_size",
        "`data_conf.validation_data`: AUTO_SPLIT with this ratio, seeded by seed (0, the default: NONE)",
        fraction,
    ),
    renamed_as("dataset_prepared_path", "data_conf.prepared_path", as_str, "where tokenized data is cached"),
    renamed_as("dataset_processes", "data_conf.num_preprocess_workers", at_least(1)),
    renamed_as("dataset_num_proc", "data_conf.num_preprocess_workers", at_least(1)),
    noticed_when(
        "shuffle_merged_datasets",
        "false: the merged data keeps its order on disk, but the trainer shuffles it every epoch anyway "
        "(curriculum_sampling: true keeps the order)",
        when=lambda value: value is False,
    ),
    renamed_as("dataset_exact_deduplication", "data_conf.deduplicate", as_bool, "exact duplicate rows dropped"),
    noticed_when("dataset_keep_in_memory", "datasets are memory-mapped Arrow files; nothing to keep in memory"),
    Key("push_dataset_to_hub", "refused", "pushing the prepared dataset is not supported; upload the data files"),
    option(
        "sequence_len",
        "`sft_args.max_seq_length` (default 512, axolotl's); with rl `training_args.max_length`",
        at_least(1),
    ),
    option(
        "excess_length_strategy",
        "`sft_args.length_handling`: drop → filter (the default), truncate → truncate, raise → error",
        one_of(*LENGTH_HANDLING),
    ),
    option("sample_packing", "`sft_args.packing: true` (best-fit-decreasing, documents kept apart)", as_bool),
    option("eval_sample_packing", "`sft_args.eval_packing` (default: as sample_packing)", as_bool),
    noticed_when(
        "pad_to_sequence_len",
        "batches are padded to their longest row; padding to sequence_len would change memory use only, not what "
        "is trained",
    ),
    noticed_when(
        "sample_packing_sequentially",
        "packing is best-fit-decreasing (rows reordered within the packing); the same tokens are trained",
    ),
    option(
        "train_on_inputs", "`sft_args.train_on_completions_only` = not train_on_inputs (default false: true)", as_bool
    ),
    option(
        "chat_template",
        "`data_conf.chat_template_name`: tokenizer_default → keep-original (the default), chatml → chat-ml, llama3 "
        "→ simplified-llama31; jinja with chat_template_jinja; others refused",
        as_str,
    ),
    option("chat_template_jinja", "`data_conf.chat_template_jinja` (with chat_template: jinja or unset)", as_str),
    renamed_as("default_system_message", "data_conf.default_system_message", as_str),
    noticed_when(
        "remove_unused_columns",
        "the engine builds the columns it trains on itself; nothing to remove",
        when=lambda value: True,
    ),
)
