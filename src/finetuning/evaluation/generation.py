"""Generation for the benchmarks that score generated text (exact_match, human_eval), through the `generate` tool's
own functions (tools/generate.py): the model loads, the prompts render and decoding stops exactly as with
`finetuning generate`, so a benchmark's answers are the answers that tool gives for the same prompts (greedy)."""

from __future__ import annotations

from pathlib import Path

from ..tools.generate import Prompt

GENERATION_BATCH_SIZE = 8


def generation_config(model_dir: Path, max_new_tokens: int = 1):
    """The `generate` tool's config for the model in `model_dir` (prompts are passed in, not read from it)."""
    from ..config.generate import GenerateConfig

    return GenerateConfig.model_validate(
        {
            "model_conf": {"model": str(model_dir)},
            "prompt_conf": {"type": "open-input", "input": "-"},  # only has to be valid
            "hf_gen_params": {"max_new_tokens": max_new_tokens},
            "batch_size": GENERATION_BATCH_SIZE,
        }
    )


def load_for_evaluation(model_dir: Path, config=None):
    """(model, tokenizer) of `model_dir` loaded as the `generate` tool does (training's loading options, its own
    tokenizer), on the GPU when there is one."""
    from ..tools import generate as tool

    config = config or generation_config(model_dir)
    tool.check_sources(config.model_conf)
    tokenizer = tool.load_tokenizer(config.model_conf)
    return tool.load_model(config, tokenizer), tokenizer


def generate_answers(model_dir: Path, prompts: list[Prompt], max_new_tokens: int) -> list[dict]:
    """The `generate` tool's output items for `prompts` on the model in `model_dir` (its own tokenizer and chat
    template), greedy, at most `max_new_tokens` per answer."""
    from ..tools import generate as tool

    config = generation_config(model_dir, max_new_tokens)
    tool.check_sources(config.model_conf)
    tokenizer = tool.load_tokenizer(config.model_conf)
    extra_stops = tool.prepare_tokenizer(tokenizer, config.chat_template_name)  # before the model: as the tool
    model = tool.load_model(config, tokenizer)
    params = tool.generation_params(config, tool.stop_token_ids(tokenizer, model, extra_stops), tokenizer.pad_token_id)
    try:
        return tool.generate_items(config, prompts, model, tokenizer, params)
    finally:
        del model
        free_accelerator_memory()


def free_accelerator_memory() -> None:
    """The next benchmark loads the model again: give back what this one held on the GPU."""
    import gc

    gc.collect()
    try:
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    except ImportError:  # pragma: no cover - torch is a dependency
        pass
