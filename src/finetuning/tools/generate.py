"""Generate answers with Hugging Face `generate()`, loading the model with the same options as training.

    generate CONFIG OUTPUT.yaml          (or: finetuning generate CONFIG OUTPUT.yaml)

Example config (see docs/generate.md and examples/generate-facts.yaml):

```yaml
model_conf:
  model: demo_output/checkpoints/checkpoint-final
prompt_conf:
  type: eval-data
  data: {path: examples/data/facts.jsonl}
hf_gen_params: {max_new_tokens: 64}
```

The output is a YAML list, one item per prompt, with the keys `dataset`, `id`, `prompt`, `answer`,
`correct_answers`, `test_type`, `data_collection`, `truncated`, `all_text_raw`, `gen_params` (and `exact_match` when
the prompt has correct answers). Decoding is greedy unless `hf_gen_params` says otherwise, so runs are repeatable.
"""

from __future__ import annotations

import argparse
import copy
import logging
import os
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from ..config.generate import EvalDataPrompts, GenerateConfig, load_generate_config
from ..data.readers import check_messages, read_rows
from ..errors import UserError, report_user_error
from ..model.adapter_dir import adapter_dir_as_model_problem
from ..model.loading import (
    ModelSetupError,
    adapter_source_problems,
    model_source_problems,
    pickle_adapter_problems,
    pickle_weights_problems,
    shown_source,
)
from ..paths import resolve_user_path

logger = logging.getLogger(__name__)

DEFAULT_MAX_LENGTH = 2048
DEFAULT_MAX_NEW_TOKENS = 512
TEST_TYPE = "open-ended"


@dataclass
class Prompt:
    """One prompt to answer, with what the output item needs to say about it."""

    dataset: str
    id: str
    messages: list[dict]
    correct_answers: list[str] | None
    data_collection: str


# --- prompts ------------------------------------------------------------------------------------------------------


def eval_row_problem(row: dict) -> str | None:
    """`prompt_messages` rows (optional `correct_answers`), or SFT `messages` rows ending with the assistant answer."""
    if "prompt_messages" in row:
        problem = check_messages(row["prompt_messages"], "prompt_messages")
        if problem is None and "correct_answers" in row:
            answers = row["correct_answers"]
            if not isinstance(answers, list) or not all(isinstance(a, str) for a in answers):
                problem = "'correct_answers' must be a list of strings"
        return problem
    if "messages" in row:
        problem = check_messages(row["messages"], "messages")
        if problem is None and (row["messages"][-1]["role"] != "assistant" or len(row["messages"]) < 2):
            problem = "'messages' must end with the assistant answer, after at least one prompt message"
        return problem
    return f"missing 'prompt_messages' (or SFT 'messages'); keys found: {sorted(row)}"


def read_prompts(prompt_conf) -> list[Prompt]:
    if not isinstance(prompt_conf, EvalDataPrompts):
        messages = [{"role": "user", "content": prompt_conf.input}]
        return [
            Prompt("open-input", str(index), messages, None, "open-input") for index in range(prompt_conf.num_samples)
        ]
    path = prompt_conf.data.path
    rows = read_rows(path, eval_row_problem)
    dataset = resolve_user_path(path).stem
    prompts = []
    for index, row in enumerate(rows):
        if "prompt_messages" in row:
            messages, answers = row["prompt_messages"], row.get("correct_answers")
        else:
            messages, answers = row["messages"][:-1], [row["messages"][-1]["content"]]
        prompts.append(
            Prompt(
                dataset=str(row.get("dataset", dataset)),
                id=str(row.get("id", index)),
                messages=messages,
                correct_answers=answers,
                data_collection=str(row.get("data_collection", path)),
            )
        )
    return prompts


# --- model and tokenizer ------------------------------------------------------------------------------------------


def check_sources(model_conf) -> None:
    """A plainly missing local model / adapter / tokenizer path, an adapter directory given as the model, or
    pickle-only weights while safetensors are required (the default), is a user error before anything loads."""
    args = model_conf.model_args
    problems = [
        *model_source_problems(model_conf.model, "model_conf.model"),
        adapter_dir_as_model_problem(model_conf.model, "model_conf.model", "model_conf.adapter"),
        *pickle_weights_problems(model_conf.model, args, "model_conf.model", "model_conf.model_args"),
    ]
    if model_conf.tokenizer:
        problems += model_source_problems(model_conf.tokenizer, "model_conf.tokenizer")
    if model_conf.adapter:
        problems += adapter_source_problems(model_conf.adapter, "model_conf.adapter")
        problems += pickle_adapter_problems(model_conf.adapter, args, "model_conf.adapter", "model_conf.model_args")
    problems = [p for p in problems if p]
    if problems:
        raise ModelSetupError(problems)


def tokenizer_source(model_conf) -> tuple[str, str]:
    if model_conf.tokenizer:
        return model_conf.tokenizer, "model_conf.tokenizer"
    if model_conf.adapter and (Path(model_conf.adapter).expanduser() / "tokenizer_config.json").is_file():
        return model_conf.adapter, "model_conf.adapter"
    return model_conf.model, "model_conf.model"


def load_tokenizer(model_conf):
    from ..model.tokenizer import load_tokenizer_from

    source, key = tokenizer_source(model_conf)
    return load_tokenizer_from(source, key, trust_remote_code=model_conf.model_args.trust_remote_code)


def prepare_tokenizer(tokenizer, chat_template_name: str | None) -> list[str]:
    """Install a named template (as in training) if asked; left padding; a pad token. Returns extra stop strings."""
    stops = []
    if chat_template_name is not None:
        from ..data.templates import get_template
        from ..model.tokenizer import setup_tokenizer

        conf = SimpleNamespace(padding_side="left", missing_pad_token_strategy="bos-repurpose")
        markers, added = setup_tokenizer(tokenizer, get_template(chat_template_name), conf)
        if added:
            logger.warning("chat template %r added tokens %s the model was not trained on", chat_template_name, added)
        stops.append(markers.assistant_end)
    elif not getattr(tokenizer, "chat_template", None):
        raise UserError(
            "the tokenizer has no chat template; set chat_template_name (e.g. the one the model was trained with)"
        )
    tokenizer.padding_side = "left"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token if tokenizer.eos_token is not None else tokenizer.bos_token
    if tokenizer.pad_token is None:
        raise UserError("the tokenizer has no pad, eos or bos token to pad batches with")
    return stops


def load_model(config: GenerateConfig, tokenizer):
    from ..config.run import RunConfig
    from ..model import loading

    run_conf = RunConfig(model=config.model_conf.model, model_args=config.model_conf.model_args)
    # trust_remote_code (false unless set) and use_safetensors (true unless set) go explicitly to from_pretrained.
    model = loading.load_model(run_conf, config.quant_conf, num_processes=1, key="model_conf.model")
    loading.expand_vocabulary(model, tokenizer, quantized=config.quant_conf.quantization_type != "no-quantization")
    adapter = config.model_conf.adapter
    if adapter:
        import peft

        # A PEFT adapter is a config and weights, never code: PeftModel.from_pretrained has no trust_remote_code.
        try:
            model = peft.PeftModel.from_pretrained(model, adapter)
        except (OSError, ValueError) as error:
            raise ModelSetupError(
                f"model_conf.adapter: could not load the adapter from {shown_source(adapter)}: {error}"
            ) from None
    return model.eval()


def stop_token_ids(tokenizer, model, extra_stops: list[str]) -> list[int]:
    """Tokenizer eos (after `finetuning sft`: the template's end marker), the model's eos ids, '</s>' if known."""
    ids: list[int] = []

    def add(value):
        for item in value if isinstance(value, (list, tuple)) else [value]:
            if isinstance(item, int) and item not in ids:
                ids.append(item)

    add(tokenizer.eos_token_id)
    add(getattr(getattr(model, "generation_config", None), "eos_token_id", None))
    vocab = tokenizer.get_vocab()
    for token in [*extra_stops, "</s>"]:
        if token in vocab:
            add(vocab[token])
    return ids


# --- generation ---------------------------------------------------------------------------------------------------


def generation_params(config: GenerateConfig, stop_ids: list[int], pad_id: int) -> dict[str, Any]:
    params: dict[str, Any] = {
        "do_sample": False,
        "max_length": DEFAULT_MAX_LENGTH,
        "max_new_tokens": DEFAULT_MAX_NEW_TOKENS,
        "eos_token_id": stop_ids,
        "pad_token_id": pad_id,
    }
    params.update(config.hf_gen_params)
    if params["max_new_tokens"] is None or params["max_length"] is None:
        raise UserError("hf_gen_params: max_length and max_new_tokens must be set (or left to their defaults)")
    if params["max_length"] - params["max_new_tokens"] < 1:
        raise UserError(
            f"hf_gen_params: max_length ({params['max_length']}) must exceed max_new_tokens "
            f"({params['max_new_tokens']}): prompts are truncated to max_length - max_new_tokens tokens"
        )
    return params


def _progress(total: int):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc="generate", unit="batch", disable=not sys.stderr.isatty())


def generate_items(config: GenerateConfig, prompts: list[Prompt], model, tokenizer, params: dict) -> list[dict]:
    import torch
    from transformers import set_seed

    set_seed(config.seed)
    prompt_budget = params["max_length"] - params["max_new_tokens"]
    # max_new_tokens decides the length; max_length only sets the prompt budget (transformers warns on both).
    call_params = {key: value for key, value in params.items() if key != "max_length"}
    if call_params.get("stop_strings"):
        call_params["tokenizer"] = tokenizer
    stop_ids = set(params["eos_token_id"] or [])
    pad_id = params["pad_token_id"]
    device = next(model.parameters()).device
    items = []
    with _progress((len(prompts) + config.batch_size - 1) // config.batch_size) as bar:
        for start in range(0, len(prompts), config.batch_size):
            batch = prompts[start : start + config.batch_size]
            texts = [
                tokenizer.apply_chat_template(p.messages, add_generation_prompt=True, tokenize=False) for p in batch
            ]
            encoded = [tokenizer(text, add_special_tokens=False)["input_ids"] for text in texts]
            truncated = [len(ids) > prompt_budget for ids in encoded]
            encoded = [ids[-prompt_budget:] for ids in encoded]
            width = max(len(ids) for ids in encoded)
            input_ids = torch.tensor([[pad_id] * (width - len(ids)) + ids for ids in encoded], device=device)
            # Always pass the mask: the pad token may be bos, and a mask guessed from pad ids would hide the real bos.
            attention_mask = torch.tensor([[0] * (width - len(ids)) + [1] * len(ids) for ids in encoded], device=device)
            with torch.no_grad():
                output = model.generate(input_ids=input_ids, attention_mask=attention_mask, **call_params)
            for prompt, text, ids, cut, row in zip(
                batch, texts, encoded, truncated, output[:, width:].tolist(), strict=True
            ):
                new_tokens = []
                for token in row:
                    new_tokens.append(token)
                    if token in stop_ids:
                        break
                prompt_text = tokenizer.decode(ids, skip_special_tokens=False) if cut else text
                answer = tokenizer.decode(new_tokens, skip_special_tokens=True).strip()
                item = {
                    "dataset": prompt.dataset,
                    "id": prompt.id,
                    "prompt": prompt_text,
                    "answer": answer,
                    "correct_answers": prompt.correct_answers,
                    "test_type": TEST_TYPE,
                    "data_collection": prompt.data_collection,
                    "truncated": cut,
                    "all_text_raw": prompt_text + tokenizer.decode(new_tokens, skip_special_tokens=False),
                    "gen_params": copy.deepcopy(params),  # no YAML anchors between items
                }
                if prompt.correct_answers:
                    item["exact_match"] = answer.strip() in prompt.correct_answers
                items.append(item)
            bar.update(1)
    return items


def _yaml_dumper():
    import yaml

    class Dumper(yaml.SafeDumper):
        """Multi-line strings (rendered prompts) as `|` blocks, so the output reads like the text the model saw."""

    def represent_str(dumper, value):
        style = "|" if "\n" in value else None
        return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)

    Dumper.add_representer(str, represent_str)
    return Dumper


def write_yaml_atomic(items: list[dict], output_path: str) -> None:
    import yaml

    path = Path(output_path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as stream:
            yaml.dump(items, stream, Dumper=_yaml_dumper(), sort_keys=False, allow_unicode=True, width=120)
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise


def generate(config: GenerateConfig, output_path: str) -> list[dict]:
    """Load, generate and write; returns the output items. Raises UserError for bad input."""
    prompts = read_prompts(config.prompt_conf)  # bad data fails before the model loads
    check_sources(config.model_conf)
    tokenizer = load_tokenizer(config.model_conf)
    extra_stops = prepare_tokenizer(tokenizer, config.chat_template_name)
    model = load_model(config, tokenizer)
    params = generation_params(config, stop_token_ids(tokenizer, model, extra_stops), tokenizer.pad_token_id)
    items = generate_items(config, prompts, model, tokenizer, params)
    write_yaml_atomic(items, output_path)
    scored = [item for item in items if "exact_match" in item]
    if scored:
        hits = sum(item["exact_match"] for item in scored)
        print(f"exact match: {hits}/{len(scored)} ({100 * hits / len(scored):.1f}%)")
    print(f"wrote {len(items)} generation(s) to {output_path}")
    return items


def run_generate_command(config_path: str, output_path: str) -> int:
    """`finetuning generate CONFIG OUTPUT`: 0 on success, 2 (problems on stderr, no traceback) on a user error."""

    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    try:
        generate(load_generate_config(config_path), output_path)
    except UserError as error:
        return report_user_error(error)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="generate", description="Generate answers with a (fine-tuned) model")
    parser.add_argument("config", help="Path to the generation YAML config file.")
    parser.add_argument("output", help="Where to write the YAML list of prompts and answers.")
    parser.add_argument("--logging-level", default="INFO", help="DEBUG, INFO, WARNING or ERROR")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=args.logging_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S"
    )
    return run_generate_command(args.config, args.output)


if __name__ == "__main__":
    sys.exit(main())
