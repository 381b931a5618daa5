"""Build a tiny random-init Llama (or GPT-2, Gemma2) and a BPE tokenizer trained on the fly, saved as a HF model dir.

The demo and the tests need a real base model without any hub download: this writes one in a few seconds that
loads with plain `AutoModelForCausalLM` / `AutoTokenizer`, like any checkpoint a user would pass in `run_conf.model`.

    python -m finetuning.tools.tiny_model OUT_DIR [--corpus file.jsonl ...] [--architecture llama|gpt2|gemma2]

GPT-2 and Gemma2 are there for the architectures the Silogen engine's own end-to-end tests train (Conv1D layers,
tied embeddings, softcapping); they share the Llama one's tokenizer, so only the architecture differs.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterable, Iterator
from pathlib import Path

# A chat template of the tokenizer's own, so that `chat_template_name: keep-original` has something to keep.
TINY_CHAT_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}"
    "{{ '### ' + message['role'] + ':\n' + message['content'] + eos_token + '\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '### assistant:\n' }}{% endif %}"
)

_FILLER = [
    "The quick brown fox jumps over the lazy dog.",
    "What is the capital of the country? The capital is a city.",
    "You are a helpful assistant. Answer the question briefly.",
    "Numbers: 0 1 2 3 4 5 6 7 8 9 10 11 12 100 1000.",
    "system user assistant question answer who what where when why how which",
]


def _texts_from_jsonl(path: Path) -> Iterator[str]:
    """Yield every string found in a JSONL file's rows (message contents, prompts...), whatever the row shape."""

    def strings(value) -> Iterator[str]:
        if isinstance(value, str):
            yield value
        elif isinstance(value, dict):
            for item in value.values():
                yield from strings(item)
        elif isinstance(value, list):
            for item in value:
                yield from strings(item)

    with path.open(encoding="utf-8") as handle:
        for line in handle:
            if line.strip():
                yield from strings(json.loads(line))


def build_tokenizer(corpus: Iterable[str], vocab_size: int = 512):
    """Train a byte-level BPE tokenizer; it has bos/eos/unk but deliberately no pad token (the engine must set one)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.BPE(unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=["<unk>", "<s>", "</s>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tokenizer.train_from_iterator(list(corpus) + _FILLER * 4, trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, bos_token="<s>", eos_token="</s>", unk_token="<unk>", model_max_length=2048
    )
    fast.chat_template = TINY_CHAT_TEMPLATE
    return fast


ARCHITECTURES = ("llama", "gpt2", "gemma2")


def _decoder_sizes(vocab_size: int, hidden_size: int, num_layers: int) -> dict:
    """What the Llama-style configs (Llama, Gemma2) share: sizes, grouped-query heads, the tokenizer's bos/eos ids."""
    return {
        "vocab_size": vocab_size,
        "hidden_size": hidden_size,
        "intermediate_size": hidden_size * 2,
        "num_hidden_layers": num_layers,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "max_position_embeddings": 2048,
        "bos_token_id": 1,
        "eos_token_id": 2,
    }


def _llama_config(vocab_size: int, hidden_size: int, num_layers: int):
    from transformers import LlamaConfig

    return LlamaConfig(**_decoder_sizes(vocab_size, hidden_size, num_layers), tie_word_embeddings=False)


def _gpt2_config(vocab_size: int, hidden_size: int, num_layers: int):
    """GPT-2 as published: Conv1D layers (`c_attn`, `c_proj`, `c_fc`; LoRA needs fan_in_fan_out), tied embeddings."""
    from transformers import GPT2Config

    return GPT2Config(
        vocab_size=vocab_size,
        n_positions=2048,
        n_embd=hidden_size,
        n_layer=num_layers,
        n_head=4,
        bos_token_id=1,
        eos_token_id=2,
    )


def _gemma2_config(vocab_size: int, hidden_size: int, num_layers: int):
    """Gemma2 with what sets it apart kept on: tied embeddings, attention and final logit softcapping, alternating
    sliding-window layers (a window shorter than the test sequences), embeddings scaled by sqrt(hidden_size)."""
    from transformers import Gemma2Config

    return Gemma2Config(
        **_decoder_sizes(vocab_size, hidden_size, num_layers),
        head_dim=hidden_size // 4,
        query_pre_attn_scalar=hidden_size // 4,
        sliding_window=16,
        pad_token_id=None,  # like the others: no pad token, the engine must set one
    )


def build_model(
    vocab_size: int, hidden_size: int = 64, num_layers: int = 2, seed: int = 0, architecture: str = "llama"
):
    """A random-init causal LM (Llama by default); bos/eos ids match the tokenizer built above (special tokens first)."""
    import torch
    from transformers import AutoModelForCausalLM

    configs = {"llama": _llama_config, "gpt2": _gpt2_config, "gemma2": _gemma2_config}
    if architecture not in configs:
        raise ValueError(f"architecture: {architecture!r}; expected one of {', '.join(ARCHITECTURES)}")
    torch.manual_seed(seed)
    return AutoModelForCausalLM.from_config(configs[architecture](vocab_size, hidden_size, num_layers))


def build_tiny_model(
    out_dir: str | Path,
    corpus_files: Iterable[str | Path] = (),
    vocab_size: int = 512,
    hidden_size: int = 64,
    num_layers: int = 2,
    seed: int = 0,
    architecture: str = "llama",
) -> Path:
    """Write tokenizer + model (`architecture`: llama, gpt2 or gemma2; same tokenizer) to `out_dir` and return it."""
    out = Path(out_dir)
    corpus: list[str] = []
    for path in corpus_files:
        corpus.extend(_texts_from_jsonl(Path(path)))
    tokenizer = build_tokenizer(corpus, vocab_size)
    model = build_model(len(tokenizer), hidden_size, num_layers, seed, architecture)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out_dir")
    parser.add_argument("--corpus", nargs="*", default=[], help="JSONL files whose strings train the tokenizer")
    parser.add_argument("--vocab-size", type=int, default=512)
    parser.add_argument("--hidden-size", type=int, default=64)
    parser.add_argument("--num-layers", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--architecture", choices=ARCHITECTURES, default="llama")
    args = parser.parse_args(argv)
    path = build_tiny_model(
        args.out_dir, args.corpus, args.vocab_size, args.hidden_size, args.num_layers, args.seed, args.architecture
    )
    print(f"tiny model written to {path}")


if __name__ == "__main__":
    main()
