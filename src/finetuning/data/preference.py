"""Preference data (DPO pairs, KTO examples): row checks, template rendering into prompt / completion text, tokens.

The prompt is the template's rendering of the prompt messages with the generation prompt (so the assistant header
belongs to the prompt, as at inference); each completion is the rendering of prompt + completion messages minus that
prompt text. Token ids come from tokenising the full text once and cutting at the common prefix with the prompt,
exactly as TRL does, so DPO sees the same ids an SFT model was trained and is served with.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from .inputs import (
    DataReport,
    drop_too_long,
    input_problems,
    prepare_splits,
    preprocess_workers,
    read_input,
    sum_over_batches,
    tokenize_each,
)
from .readers import check_messages
from .templates import TemplateError, get_template, render, role_order_problem, template_refusal

if TYPE_CHECKING:  # datasets (pandas, pyarrow) and TRL (torch) load only when data is tokenized, not for row checks
    from datasets import Dataset


PAIR_KEYS = ("prompt_messages", "chosen_messages", "rejected_messages")
UNPAIRED_KEYS = ("prompt_messages", "completion_messages", "label")
SETTING = "training_args.max_length"


def _completion_problem(messages, key: str) -> str | None:
    problem = check_messages(messages, key, require_assistant=True)
    if problem is None and messages[0]["role"] != "assistant":
        return f"'{key}' must start with an assistant message (the prompt holds the user turns)"
    return problem


def dpo_row_problem(row: dict) -> str | None:
    missing = [key for key in PAIR_KEYS if key not in row]
    if missing:
        trl_style = "chosen" in row or "rejected" in row
        trl = "; TRL-style prompt/chosen/rejected: rename to *_messages, each a message list" if trl_style else ""
        return f"missing {missing} (a DPO row has {', '.join(PAIR_KEYS)}; keys found: {sorted(row)}{trl})"
    problem = check_messages(row["prompt_messages"], "prompt_messages") or next(
        (p for key in PAIR_KEYS[1:] if (p := _completion_problem(row[key], key))), None
    )
    if problem is None and row["chosen_messages"] == row["rejected_messages"]:
        return "'chosen_messages' and 'rejected_messages' are identical, so the pair prefers nothing"
    return problem


def kto_row_problem(row: dict) -> str | None:
    """KTO takes DPO pairs (one desirable + one undesirable example each) or unpaired rows with a boolean label."""
    if "chosen_messages" in row or "rejected_messages" in row:
        return dpo_row_problem(row)
    missing = [key for key in UNPAIRED_KEYS if key not in row]
    if missing:
        return f"missing {missing} (a KTO row has {', '.join(UNPAIRED_KEYS)}, or is a DPO pair)"
    if not isinstance(row["label"], bool):
        return f"'label' must be true (desirable) or false (undesirable), got {row['label']!r}"
    return check_messages(row["prompt_messages"], "prompt_messages") or _completion_problem(
        row["completion_messages"], "completion_messages"
    )


def _completions(row: dict) -> list[tuple[str, list[dict]]]:
    keys = ("chosen_messages", "rejected_messages") if "chosen_messages" in row else ("completion_messages",)
    return [(key, row[key]) for key in keys]


def preference_row_checker(method: str, data_conf, tokenizer=None) -> Callable[[dict], str | None]:
    """The row's shape (DPO pair or KTO example), then the role order its chat template needs: the prompt ends with
    a user turn that each completion answers. Given the tokenizer, also what its own template (keep-original)
    refuses. Each problem is found here, where it can name the file and line."""
    shape = row_schema(method)[0]
    template = get_template(data_conf.chat_template_name)
    refusal = template_refusal(tokenizer) if tokenizer is not None and template.jinja is None else None

    def order_problem(prompt: list[dict], key: str, completion: list[dict]) -> str | None:
        if template.alternating and prompt[-1]["role"] != "user":
            return f"'prompt_messages' must end with a user message for the {template.name!r} chat template"
        problem = role_order_problem(prompt, template, "prompt_messages") or role_order_problem(
            completion, template, key, first="assistant"
        )
        return problem or (refusal(prompt + completion) if refusal else None)

    def problem(row: dict) -> str | None:
        if found := shape(row):
            return found
        completions = _completions(row)
        return next((p for key, c in completions if (p := order_problem(row["prompt_messages"], key, c))), None)

    return problem


def split_prompt(prompt_messages: list[dict], completion_messages: list[dict], tokenizer) -> tuple[str, str]:
    """(prompt text, completion text) such that prompt + completion == the rendered whole conversation."""
    full = render(prompt_messages + completion_messages, tokenizer)
    for add_generation_prompt in (True, False):
        prompt = render(prompt_messages, tokenizer, add_generation_prompt=add_generation_prompt)
        if full.startswith(prompt):
            return prompt, full[len(prompt) :]
    raise TemplateError(
        "the chat template does not render the prompt messages as a prefix of the whole conversation, so prompt and "
        "completion cannot be separated; use another chat template"
    )


def preference_texts(row: dict, tokenizer) -> dict[str, str]:
    """A DPO row → {"prompt", "chosen", "rejected"} strings (the chosen/rejected texts continue the prompt)."""
    prompt, chosen = split_prompt(row["prompt_messages"], row["chosen_messages"], tokenizer)
    prompt_again, rejected = split_prompt(row["prompt_messages"], row["rejected_messages"], tokenizer)
    assert prompt == prompt_again  # the prompt rendering does not depend on the completion
    return {"prompt": prompt, "chosen": chosen, "rejected": rejected}


def truncate_prompt(prompt_ids: list[int], max_prompt_length: int | None, bos_token_id: int | None) -> list[int]:
    """Keep the end of a long prompt (where the question is), and its leading bos if it had one."""
    if max_prompt_length is None or len(prompt_ids) <= max_prompt_length:
        return prompt_ids
    keep_bos = bos_token_id is not None and prompt_ids[0] == bos_token_id
    tail = prompt_ids[len(prompt_ids) - (max_prompt_length - keep_bos) :]
    return ([bos_token_id] if keep_bos else []) + tail


def tokenize_pair(row: dict, tokenizer, max_prompt_length: int | None) -> dict:
    from trl.data_utils import common_prefix_length

    texts = preference_texts(row, tokenizer)

    def ids(text: str) -> list[int]:
        return tokenizer(text, add_special_tokens=False)["input_ids"]

    prompt_ids, full_chosen, full_rejected = (
        ids(texts["prompt"]),
        ids(texts["prompt"] + texts["chosen"]),
        ids(texts["prompt"] + texts["rejected"]),
    )
    cut = min(common_prefix_length(prompt_ids, full_chosen), common_prefix_length(prompt_ids, full_rejected))
    prompt_ids = truncate_prompt(prompt_ids[:cut], max_prompt_length, tokenizer.bos_token_id)
    chosen_ids, rejected_ids = full_chosen[cut:], full_rejected[cut:]
    return {
        "prompt_ids": prompt_ids,
        "chosen_ids": chosen_ids,
        "rejected_ids": rejected_ids,
        # what TRL's collator feeds the model: prompt + the longer completion
        "length": len(prompt_ids) + max(len(chosen_ids), len(rejected_ids)),
    }


def build_dpo_datasets(
    data_conf, max_length: int | None, max_prompt_length: int | None, tokenizer, num_proc: int | None = None
) -> tuple[Dataset, Dataset | None, DataReport]:
    """`tokenize_dpo_datasets`, tokenized once: from the on-disk cache when the data, tokenizer, template and length
    limits are unchanged (data/cache.py)."""
    from .cache import cached_datasets

    settings = {"max_length": max_length, "max_prompt_length": max_prompt_length}
    workers = preprocess_workers(num_proc, data_conf)
    return cached_datasets(
        "dpo",
        data_conf,
        settings,
        tokenizer,
        lambda: tokenize_dpo_datasets(data_conf, max_length, max_prompt_length, tokenizer, workers),
    )


def tokenize_dpo_datasets(
    data_conf, max_length: int | None, max_prompt_length: int | None, tokenizer, num_proc: int | None = None
) -> tuple[Dataset, Dataset | None, DataReport]:
    """Tokenised (train, validation or None, report); columns prompt_ids, chosen_ids, rejected_ids."""
    report = DataReport()

    def process(parts: list[Dataset], what: str) -> list[Dataset]:
        options = {"tokenizer": tokenizer, "max_prompt_length": max_prompt_length}
        tokenized = [tokenize_each(part, tokenize_pair, f"{what} pairs", num_proc, fn_kwargs=options) for part in parts]
        return tokenized if max_length is None else drop_too_long(tokenized, max_length, what, report, SETTING)

    row_problem = preference_row_checker("dpo", data_conf, tokenizer)
    train, evaluation = prepare_splits(
        data_conf,
        lambda data_input, where: read_input(data_input, row_problem, PAIR_KEYS, where, data_conf, report),
        process,
    )
    _fill_report(report, train, evaluation, ("chosen_ids", "rejected_ids"))
    return train.remove_columns("length"), None if evaluation is None else evaluation.remove_columns("length"), report


def _kto_batch(batch: dict) -> dict:
    """A batch of rows → TRL's conversational unpaired form {prompt, completion, label}; a pair gives one example
    of each label."""
    out: dict[str, list] = {"prompt": [], "completion": [], "label": []}
    for row, prompt in enumerate(batch["prompt_messages"]):
        if batch["chosen_messages"][row]:
            examples = [(batch["chosen_messages"][row], True), (batch["rejected_messages"][row], False)]
        else:
            examples = [(batch["completion_messages"][row], batch["label"][row])]
        for completion, label in examples:
            out["prompt"].append(prompt)
            out["completion"].append(completion)
            out["label"].append(label)
    return out


def _as_kto_examples(dataset: Dataset) -> Dataset:
    """Rows → KTO examples, batch by batch (no list of every row)."""
    return dataset.map(_kto_batch, batched=True, remove_columns=dataset.column_names, desc="KTO examples")


KTO_COLUMNS = ("prompt_messages", "chosen_messages", "rejected_messages", "completion_messages", "label")


def build_kto_datasets(data_conf, tokenizer, seed: int) -> tuple[Dataset, Dataset | None, DataReport]:
    """Conversational KTO examples; TRL's KTOTrainer tokenises them with the installed chat template (and adds the
    mismatched completions its KL estimate needs), which renders exactly as `split_prompt` above.

    Training examples are shuffled here (seeded), after the split and mix: KTO reads them in a fixed order, and an
    unpaired pair's two halves must not sit side by side in every batch."""
    report = DataReport()

    def process(parts: list[Dataset], what: str) -> list[Dataset]:
        examples = [_as_kto_examples(part) for part in parts]
        for example in examples[0].select(range(min(1, len(examples[0])))):
            split_prompt(example["prompt"], example["completion"], tokenizer)  # fail early on an unusable template
        return examples

    row_problem = preference_row_checker("kto", data_conf, tokenizer)
    train, evaluation = prepare_splits(
        data_conf,
        lambda data_input, where: read_input(data_input, row_problem, KTO_COLUMNS, where, data_conf, report),
        process,
    )
    train = train.shuffle(seed=seed).flatten_indices()
    report.train_examples, report.eval_examples = len(train), 0 if evaluation is None else len(evaluation)
    report.train_tokens, report.trained_tokens = kto_token_counts(train, tokenizer)
    return train, evaluation, report


def kto_token_counts(examples: Dataset, tokenizer, batch_size: int = 1000) -> tuple[int, int]:
    """(prompt + completion tokens, completion tokens) of KTO examples, tokenised as TRL's KTOTrainer does: the
    chat-templated prompt (with generation prompt) and prompt + completion, the completion starting where the two
    diverge. Counted before KTO's `max_length` truncation and without the KL term's mismatched completions."""
    from trl.data_utils import common_prefix_length

    tokens = trained = 0
    for batch in examples.select_columns(["prompt", "completion"]).iter(batch_size=batch_size):
        for prompt, completion in zip(batch["prompt"], batch["completion"], strict=True):
            prompt_ids = _chat_ids(tokenizer, prompt, add_generation_prompt=True)
            full_ids = _chat_ids(tokenizer, prompt + completion)
            tokens += len(full_ids)
            trained += len(full_ids) - common_prefix_length(prompt_ids, full_ids)
    return tokens, trained


def _chat_ids(tokenizer, messages: list[dict], add_generation_prompt: bool = False) -> list[int]:
    encoding = tokenizer.apply_chat_template(
        messages, tokenize=True, return_dict=True, add_generation_prompt=add_generation_prompt
    )
    return list(encoding["input_ids"])


def _fill_report(report: DataReport, train: Dataset, evaluation: Dataset | None, completion_columns) -> None:
    """Counts of one epoch, batch by batch (Arrow compute): tokens as fed to the model (prompt + the longer
    completion), trained = every completion's tokens."""
    import pyarrow.compute as pc

    report.train_examples = len(train)
    report.eval_examples = 0 if evaluation is None else len(evaluation)
    report.train_tokens = sum_over_batches(train, ["length"], lambda batch: pc.sum(batch["length"]).as_py() or 0)
    report.trained_tokens = sum_over_batches(
        train,
        completion_columns,
        lambda batch: sum(pc.sum(pc.list_value_length(batch[column])).as_py() or 0 for column in completion_columns),
    )


def row_schema(method: str):
    """(row check, columns kept) of a preference method's data files."""
    return (kto_row_problem, KTO_COLUMNS) if method == "kto" else (dpo_row_problem, PAIR_KEYS)


def preference_data_problems(data_conf, method: str) -> list[str]:
    """Every problem of every file the config names, as `finetuning validate` and the pre-flight report them."""
    check = ("preference", method, data_conf.chat_template_name)  # what preference_row_checker depends on
    return input_problems(data_conf, preference_row_checker(method, data_conf), check)
