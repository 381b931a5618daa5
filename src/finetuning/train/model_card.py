"""Model cards (README.md) in every saved model directory: what the model is — base, method, data, key settings,
final losses — and how to load it with plain transformers / PEFT, instead of the Trainer's "fine-tuned version of
[None]" draft and PEFT's "[More Information Needed]" template."""

from __future__ import annotations

import contextlib
from pathlib import Path

from ..model.loading import base_model_reference, looks_local
from ..paths import resolve_user_path
from .checkpoints import STAGING_DIR


def remove_trainer_draft_card(output_dir: Path) -> None:
    """TRL writes a draft card ("fine-tuned version of [None]") into output_dir at every checkpoint; the model
    directories carry ours."""
    from huggingface_hub import ModelCard

    path = output_dir / "README.md"
    with contextlib.suppress(OSError, ValueError):
        if path.is_file() and "generated_from_trainer" in (ModelCard.load(str(path)).data.tags or []):
            path.unlink()


def write_policy_card(model, directory: Path, resolved: dict, losses: dict | None = None) -> None:
    if hasattr(model, "peft_config"):
        base = model.peft_config[model.active_adapter].base_model_name_or_path
        write_model_card(directory, "adapter", base, resolved, losses)
    else:
        write_model_card(directory, "model", base_model_reference(resolved["run_conf"]["model"]), resolved, losses)


def final_losses(log_history: list[dict]) -> dict:
    """The last logged training and validation loss (what a reader of the card wants to compare)."""
    losses = {}
    for entry in log_history:
        for key, name in (("loss", "final training loss"), ("eval_loss", "final validation loss")):
            if key in entry:
                losses[name] = entry[key]
    return losses


_KIND_TEXT = {
    "adapter": "A {peft} adapter trained with `finetuning {method}` on the base model below.",
    "model": "A model fully fine-tuned with `finetuning {method}` from the base model below.",
    "new base": (
        "The base model with its vocabulary grown to {rows} tokens for the `{template}` chat template (new rows start "
        "at the mean embedding). The adapters of this run name it as their base: merge or load them onto this one."
    ),
    "merged": "A plain model: the adapter below merged into its base model.",
}


def write_model_card(
    directory: Path,
    kind: str,
    base: str,
    resolved: dict | None,
    losses: dict | None = None,
    rows: int | None = None,
    adapter: str | None = None,
) -> Path:
    """README.md: what the model is (base, method, data, key settings, final losses) and how to load it with plain
    transformers / PEFT. Hub metadata names the base only when it is a hub id (a local path means nothing there)."""
    from huggingface_hub import ModelCard, ModelCardData

    resolved = resolved or {}
    method = resolved.get("method", "sft")
    peft_type = (resolved.get("peft_conf") or {}).get("peft_type", "NO_PEFT")
    template = (resolved.get("data_conf") or {}).get("chat_template_name")
    data = ModelCardData(
        base_model=None if looks_local(base) else base,
        library_name="peft" if kind == "adapter" else "transformers",
        pipeline_tag="text-generation",
        tags=sorted({"finetuning", method} | ({peft_type.lower()} if kind == "adapter" else set())),
    )
    intro = _KIND_TEXT[kind].format(peft=peft_type, method=method, rows=rows, template=template)
    rows_table = [("base model", f"`{base}`")] + ([("adapter", f"`{adapter}`")] if adapter else [])
    rows_table += _settings_rows(resolved) + [(name, f"{value:.4f}") for name, value in (losses or {}).items()]
    table = "\n".join(f"| {name} | {value} |" for name, value in rows_table)
    body = f"# {directory.name}\n\n{intro}\n\n| | |\n| --- | --- |\n{table}\n\n## Load it\n\n{_usage(kind, _published(directory))}\n"
    card = ModelCard(f"---\n{data.to_yaml()}\n---\n\n{body}")
    path = Path(directory) / "README.md"
    card.save(str(path))
    return path


def _settings_rows(resolved: dict) -> list[tuple[str, str]]:
    if not resolved:
        return []
    args = resolved.get("training_args") or {}
    peft_conf = resolved.get("peft_conf") or {}
    rows = [("method", f"`{resolved.get('method', 'sft')}`, {peft_conf.get('peft_type', 'NO_PEFT')}")]
    kwargs = peft_conf.get("peft_kwargs") or {}
    if kwargs:
        shown = ", ".join(f"{key}={value}" for key, value in kwargs.items() if key in _SHOWN_PEFT_KEYS)
        rows.append(("adapter settings", shown))
    template = (resolved.get("data_conf") or {}).get("chat_template_name")
    rows.append(("chat template", f"`{template}`"))
    files = sorted(set(_data_paths(resolved.get("data_conf") or {})))
    rows.append(("data", ", ".join(f"`{path}`" for path in files) or "(none recorded)"))
    batch = (resolved.get("batchsize_conf") or {}).get("total_train_batch_size")
    for name, value in (
        ("learning rate", args.get("learning_rate")),
        ("total train batch size", batch),
        ("max steps", args.get("max_steps")),
        ("epochs", args.get("num_train_epochs")),
    ):
        if value is not None and value != -1:
            rows.append((name, str(value)))
    return rows


_SHOWN_PEFT_KEYS = ("r", "lora_alpha", "lora_dropout", "target_modules", "modules_to_save")


def _data_paths(section) -> list[str]:
    """Every `path` in the data section, whatever the mixing type nests them in."""
    if isinstance(section, dict):
        found = [str(section["path"])] if isinstance(section.get("path"), str) else []
        return found + [path for value in section.values() for path in _data_paths(value)]
    if isinstance(section, list):
        return [path for value in section for path in _data_paths(value)]
    return []


_LOADERS = {  # (import, class): an adapter loads its base from adapter_config.json, then itself
    "adapter": ("from peft import AutoPeftModelForCausalLM", "AutoPeftModelForCausalLM"),
    "model": ("from transformers import AutoModelForCausalLM", "AutoModelForCausalLM"),
}


def _published(directory: Path) -> Path:
    """Where a directory being staged (train/checkpoints.py) will be once published."""
    directory = resolve_user_path(directory)
    return directory.parent.parent / directory.name if directory.parent.name == STAGING_DIR else directory


def _usage(kind: str, directory: Path) -> str:
    statement, loader = _LOADERS.get(kind, _LOADERS["model"])
    return (
        f"```python\n{statement}\nfrom transformers import AutoTokenizer\n\n"
        f'directory = "{directory}"\n'
        f"model = {loader}.from_pretrained(directory)\n"
        "tokenizer = AutoTokenizer.from_pretrained(directory)\n"
        'messages = [{"role": "user", "content": "Hello!"}]\n'
        "inputs = tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_dict=True, "
        'return_tensors="pt")\n'
        "output = model.generate(**inputs, max_new_tokens=128)  # stops at the chat template's end marker\n"
        'print(tokenizer.decode(output[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True))\n```\n\n'
        "The tokenizer is set up for inference: its chat template writes bos, and its eos is the template's end "
        "marker. To tokenize a rendered prompt yourself, `tokenizer(tokenizer.apply_chat_template(messages, "
        "tokenize=False, add_generation_prompt=True))` gives the same ids."
    )
