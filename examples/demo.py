"""The demo: teach a tiny local model 100 invented facts with `finetuning sft`, then check it recalls them.

    python examples/demo.py        (or `make demo`, which also sets up the environment)
    python examples/demo.py --base-only    (only the tiny base models, demo_output/tiny-base and tiny-llama3, that
                                            examples start from)

No network: the base model is a random-init Llama with a tokenizer trained on the fly. Re-running skips the base
model build and resumes/finishes training from the last checkpoint (`resume_from_checkpoint: auto`).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CONFIG = ROOT / "examples" / "demo-facts-sft.yaml"
DATA = ROOT / "examples" / "data" / "facts.jsonl"
BASE_MODEL = ROOT / "demo_output" / "tiny-base"
FINAL_MODEL = ROOT / "demo_output" / "checkpoints" / "checkpoint-final"
LLAMA3_BASE = ROOT / "demo_output" / "tiny-llama3"
# Special tokens every Llama 3 tokenizer has, which axolotl's Llama-3 examples (examples/axolotl/llama-3-*) name
LLAMA3_TOKENS = [
    "<|begin_of_text|>",
    "<|end_of_text|>",
    "<|start_header_id|>",
    "<|end_header_id|>",
    "<|eot_id|>",
    "<|finetune_right_pad_id|>",
]


def build_base_model(target: Path = BASE_MODEL) -> None:
    """The examples' base model (run_conf.model: demo_output/tiny-base); `target` lets tests build it elsewhere."""
    if (target / "config.json").exists():
        print(f"[demo] base model already built: {target}")
        return
    from finetuning.tools.tiny_model import build_tiny_model

    build_tiny_model(target, [DATA], vocab_size=512, hidden_size=128, num_layers=4)
    print(f"[demo] built tiny base model (4-layer Llama, 128 wide, BPE tokenizer trained on the fly): {target}")


def build_llama3_base(base: Path = BASE_MODEL, target: Path = LLAMA3_BASE) -> None:
    """The tiny base with Llama 3's special tokens, the base of examples/axolotl/llama-3-*: their special_tokens name
    tokens a Llama 3 tokenizer has (and preference training cannot learn new ones)."""
    if (target / "config.json").exists():
        print(f"[demo] Llama-3-flavoured base model already built: {target}")
        return
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.manual_seed(0)  # the new embedding rows are sampled
    tokenizer = AutoTokenizer.from_pretrained(base)
    tokenizer.add_special_tokens({"additional_special_tokens": LLAMA3_TOKENS})
    model = AutoModelForCausalLM.from_pretrained(base)
    model.resize_token_embeddings(len(tokenizer))
    model.save_pretrained(target)
    tokenizer.save_pretrained(target)
    print(f"[demo] built the tiny base with Llama 3's special tokens: {target}")


def train() -> None:
    print(f"[demo] finetuning sft {CONFIG.relative_to(ROOT)}")
    done = subprocess.run([sys.executable, "-m", "finetuning.cli", "sft", str(CONFIG)], cwd=ROOT)
    if done.returncode != 0:  # the engine has said why above; a traceback of this script would only hide it
        sys.exit(f"[demo] training failed (exit {done.returncode}); demo_output/ may hold an older run: delete it")


def exact_match_rate() -> float:
    """Greedy answers from the saved model, loaded with plain transformers, compared to the trained answers."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(FINAL_MODEL)
    model = AutoModelForCausalLM.from_pretrained(FINAL_MODEL).eval()
    rows = [json.loads(line) for line in DATA.read_text().splitlines() if line.strip()]
    correct = 0
    for number, row in enumerate(rows):
        prompt_messages, answer = row["messages"][:-1], row["messages"][-1]["content"]
        # Pass the attention mask: the pad token is bos here (bos-repurpose), so generate() must not guess the mask
        # from pad ids, or it would hide the leading bos the model was trained with.
        prompt = tokenizer.apply_chat_template(
            prompt_messages, add_generation_prompt=True, return_tensors="pt", return_dict=True
        )
        with torch.no_grad():
            output = model.generate(**prompt, max_new_tokens=40, do_sample=False)
        generated = tokenizer.decode(output[0, prompt["input_ids"].shape[1] :], skip_special_tokens=True).strip()
        correct += generated == answer
        if number < 3 or generated != answer:
            mark = "ok " if generated == answer else "MISS"
            print(f"  [{mark}] {prompt_messages[-1]['content']!r} -> {generated!r}")
    return correct / len(rows)


def main() -> int:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    start = time.time()
    build_base_model()
    build_llama3_base()
    if "--base-only" in sys.argv[1:]:
        return 0
    train()
    print("[demo] asking the fine-tuned model every trained question (greedy decoding):")
    rate = exact_match_rate()
    print(f"[demo] exact-match rate: {rate:.0%} on {DATA.name}  (demo wall time {time.time() - start:.0f}s)")
    return 0 if rate == 1.0 else 1


if __name__ == "__main__":
    sys.exit(main())
