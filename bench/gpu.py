"""Benchmark on one GPU: a 1B-shaped Llama trained by `finetuning sft` and by plain TRL `SFTTrainer`, same run.

Issue 17's measurement. A random-init Llama of Llama-3.2-1B's body (hidden 2048, 16 layers, 32 heads, 8 KV heads,
MLP 8192; vocabulary 32000; ~1.1 B parameters) is built locally in bf16, with a BPE tokenizer trained on a sample of
the synthetic chat data of bench/data_pipeline.py (seeded conversations of ~250 tokens; no download). Then, in this
process, one after the other: ours full, TRL full, ours LoRA, TRL LoRA, each with the same model, data, chat-ml
template, completions-only loss, packing (best-fit-decreasing, documents kept apart), rows of 2048 tokens, batch 8
rows a step, constant LR, AdamW (fused), bf16, no activation checkpointing, attention `flash_attention_2` when the
flash_attn package is importable, else `sdpa`. LoRA: r 16, alpha 32, every linear layer.

* **ours**: bench/data_pipeline.py's engine config with those settings, run through `finetuning.cli.main(["sft",
  CONFIG])` (what `finetuning sft CONFIG` does);
* **TRL**: bench/data_pipeline_trl.py's set-up (the engine's chat-ml with `{% generation %}` blocks for
  `assistant_only_loss`) with `packing=True`: TRL tokenizes and packs the rows itself.

Both go through `trl.SFTTrainer.train`, which this script wraps to time a fixed window of optimizer steps after a
few warm-up steps (CUDA synchronised at both ends) and to read the peak of `torch.cuda.max_memory_allocated`.
Tokens are the real tokens of the packed rows trained in that window (rows x the mean row length of the side's
packed dataset: bfd rows are nearly full and no pads are counted). Printed per run and as ours / TRL:

* tokens/s; MFU = model FLOPs / time / 790 TFLOP/s (the bf16 dense-matmul rate measured on H100/H200, not the
  989 datasheet figure), model FLOPs = 6 N per token for full fine-tuning, 4 N for LoRA (the frozen weights need no
  weight gradients), N = the parameters that do matmuls (all but the input embedding), attention's own FLOPs not
  counted (so MFU is a lower bound);
* peak memory (GiB) and the last logged loss.

Goals: ours >= 1.0x TRL tokens/s, full-SFT MFU >= 40%. Results go to `$OUT/gpu-bench.json` (or `--out`).

On the GPU machine (Python 3.12, torch with CUDA, transformers, peft, accelerate; no trl, datasets, pydantic):
see bench/gpu_setup.sh, then

    python bench/gpu.py                     # ~3-5 minutes on an H200
    python bench/gpu.py --smoke             # here, on CPU: a tiny model, a few steps, < 1 minute

`--smoke` runs the same code with a 2-layer, 64-wide Llama in fp32 on whatever device there is (CPU here), to show
the script works; its MFU is not computed.
"""

from __future__ import annotations

import argparse
import functools
import gc
import importlib.util
import json
import os
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))
if importlib.util.find_spec("finetuning") is None:  # the GPU machine runs it from the working tree
    sys.path.insert(0, str(BENCH.parent / "src"))
from data_pipeline import engine_config, write_data  # noqa: E402 - the bench scripts import each other as plain modules
from data_pipeline_trl import CHAT_ML_WITH_GENERATION  # noqa: E402

PEAK_FLOPS = 790e12  # bf16, measured on H100 / H200 (shared/spec/platform-facts.md)
GiB = 1024**3
LLAMA_1B_BODY = {
    "hidden_size": 2048,
    "num_hidden_layers": 16,
    "num_attention_heads": 32,
    "num_key_value_heads": 8,
    "intermediate_size": 8192,
    "vocab_size": 32000,
}
TINY_BODY = {
    "hidden_size": 64,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "intermediate_size": 128,
    "vocab_size": 1024,
}
LORA = {"r": 16, "lora_alpha": 32, "lora_dropout": 0.0, "target_modules": "all-linear"}
# The tokenizer's own, + chat-ml's 2 tokens: fewer than the model's embedding rows, so neither side resizes them.
TOKENIZER_VOCAB = 512


@dataclass(frozen=True)
class Setup:
    """Everything both sides share."""

    body: dict
    dtype: str  # "bfloat16" or "float32"
    attention: str
    max_length: int
    batch: int  # rows per optimizer step (one device, no accumulation)
    warmup_steps: int
    steps: int  # timed optimizer steps after the warm-up
    conversations: int
    learning_rate: float
    optim: str
    cuda: bool

    @property
    def max_steps(self) -> int:
        return self.warmup_steps + self.steps


def choose_setup(args) -> Setup:
    import torch

    cuda = torch.cuda.is_available()
    attention = "flash_attention_2" if cuda and importlib.util.find_spec("flash_attn") else "sdpa"
    setup = Setup(
        body=LLAMA_1B_BODY,
        dtype="bfloat16",
        attention=attention,
        max_length=2048,
        batch=8,
        warmup_steps=5,
        steps=30,
        conversations=6000,  # ~1.5 M tokens: more than the 35 steps x 8 rows x 2048 tokens any side trains
        learning_rate=1e-4,
        optim="adamw_torch_fused",  # torch's fused AdamW (CUDA and CPU)
        cuda=cuda,
    )
    if args.smoke:
        setup = replace(
            setup, body=TINY_BODY, dtype="float32", max_length=512, batch=2, warmup_steps=1, steps=2, conversations=100
        )
    overrides = {"steps": args.steps, "warmup_steps": args.warmup_steps, "batch": args.batch}
    return replace(setup, **{key: value for key, value in overrides.items() if value is not None})


def build_base_model(root: Path, data: Path, setup: Setup) -> Path:
    """A random-init Llama of `setup.body` in `setup.dtype`, initialised on the GPU when there is one, and a BPE
    tokenizer trained on the data, saved as a model directory both sides load."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from finetuning.tools.tiny_model import _texts_from_jsonl, build_tokenizer

    tokenizer = build_tokenizer(list(_texts_from_jsonl(data))[:5000], TOKENIZER_VOCAB)
    config = LlamaConfig(
        **setup.body,
        max_position_embeddings=4096,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        tie_word_embeddings=False,
    )
    torch.manual_seed(0)
    with torch.device("cuda" if setup.cuda else "cpu"):
        model = LlamaForCausalLM(config).to(getattr(torch, setup.dtype))
    out = root / "base"
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    del model
    return out


# Filled by the `SFTTrainer.train` wrapper for whichever side is running.
CAPTURE: dict = {}


def install_train_probe(setup: Setup) -> None:
    """Wrap `trl.SFTTrainer.train` (both sides run through it): a callback marks the start and end of the timed
    window (after `warmup_steps` optimizer steps, CUDA synchronised), the peak memory counter is reset as training
    begins, and what the FLOPs and token counts need is read from the trainer."""
    import torch
    import trl
    from transformers import TrainerCallback

    def now() -> float:
        if setup.cuda:
            torch.cuda.synchronize()
        return time.perf_counter()

    class Window(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step == setup.warmup_steps:
                CAPTURE["start"] = now()
            elif state.global_step == setup.max_steps:
                CAPTURE["end"] = now()

    original = trl.SFTTrainer.train

    def timed_train(self, *args, **kwargs):
        self.add_callback(Window())
        if setup.cuda:
            torch.cuda.reset_peak_memory_stats()
        result = original(self, *args, **kwargs)
        CAPTURE["peak_bytes"] = torch.cuda.max_memory_allocated() if setup.cuda else None
        CAPTURE["row_tokens"] = mean_row_tokens(self.train_dataset)
        CAPTURE["matmul_parameters"] = matmul_parameters(self.model)
        CAPTURE["trained_parameters"] = sum(p.numel() for p in self.model.parameters() if p.requires_grad)
        CAPTURE["loss"] = next((e["loss"] for e in reversed(self.state.log_history) if "loss" in e), None)
        CAPTURE["attention"] = getattr(self.model.config, "_attn_implementation", None)
        return result

    trl.SFTTrainer.train = timed_train


def mean_row_tokens(dataset) -> float:
    lengths = [len(ids) for ids in dataset["input_ids"]]
    return sum(lengths) / len(lengths)


def matmul_parameters(model) -> int:
    """Base-model parameters that take part in matmuls: all but the input embedding (a lookup) and LoRA's own."""
    return sum(p.numel() for name, p in model.named_parameters() if "embed_tokens" not in name and "lora_" not in name)


def run_ours(root: Path, name: str, data: Path, model_dir: Path, setup: Setup, lora: bool) -> None:
    import yaml

    from finetuning.cli import main

    document = engine_config(data, model_dir, root / name)
    document["training_args"].update(
        {
            "max_steps": setup.max_steps,
            "learning_rate": setup.learning_rate,
            "lr_scheduler_type": "constant",
            "logging_steps": setup.max_steps,
            "disable_tqdm": True,
            "bf16": setup.dtype == "bfloat16",
            "optim": setup.optim,
            "seed": 0,
        }
    )
    document["batchsize_conf"] = {"total_train_batch_size": setup.batch, "max_per_device_train_batch_size": setup.batch}
    document["sft_args"].update({"max_seq_length": setup.max_length, "packing": True})
    document["run_conf"]["model_args"] = {"attn_implementation": setup.attention, "torch_dtype": setup.dtype}
    if lora:
        document["peft_conf"] = {"peft_type": "LORA", "task_type": "CAUSAL_LM", "peft_kwargs": dict(LORA)}
    path = root / f"{name}.yaml"
    path.write_text(yaml.safe_dump(document, sort_keys=False), encoding="utf-8")
    if main(["sft", str(path)]) != 0:
        raise SystemExit(f"the {name} run failed: see its log above")


def run_trl(root: Path, name: str, data: Path, model_dir: Path, setup: Setup, lora: bool) -> None:
    import torch
    from datasets import load_dataset
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    tokenizer.chat_template = CHAT_ML_WITH_GENERATION
    tokenizer.add_special_tokens(
        {"additional_special_tokens": ["<|im_start|>", "<|im_end|>"]}, replace_extra_special_tokens=False
    )
    tokenizer.padding_side = "right"
    tokenizer.pad_token = tokenizer.pad_token or tokenizer.bos_token
    dataset = load_dataset("json", data_files=str(data), split="train")
    model = AutoModelForCausalLM.from_pretrained(
        model_dir, dtype=getattr(torch, setup.dtype), attn_implementation=setup.attention
    )
    config = SFTConfig(
        output_dir=str(root / name),
        per_device_train_batch_size=setup.batch,
        gradient_accumulation_steps=1,
        max_steps=setup.max_steps,
        learning_rate=setup.learning_rate,
        lr_scheduler_type="constant",
        max_length=setup.max_length,
        packing=True,
        assistant_only_loss=True,
        bf16=setup.dtype == "bfloat16",
        optim=setup.optim,
        seed=0,
        logging_steps=setup.max_steps,
        save_strategy="no",
        report_to="none",
        activation_checkpointing=False,
        use_cpu=not setup.cuda,
        disable_tqdm=True,
    )
    peft_config = LoraConfig(task_type="CAUSAL_LM", **LORA) if lora else None
    trainer = SFTTrainer(
        model=model, args=config, train_dataset=dataset, processing_class=tokenizer, peft_config=peft_config
    )
    trainer.train()


def measure(side: str, method: str, run, setup: Setup) -> dict:
    """One run with the probe: tokens/s, MFU, peak memory. The previous run's tensors are freed first."""
    import torch

    gc.collect()
    if setup.cuda:
        torch.cuda.empty_cache()
    CAPTURE.clear()
    started = time.perf_counter()
    run()
    wall = time.perf_counter() - started
    seconds = CAPTURE["end"] - CAPTURE["start"]
    tokens = setup.steps * setup.batch * CAPTURE["row_tokens"]
    flops_per_token = (6 if method == "full" else 4) * CAPTURE["matmul_parameters"]
    result = {
        "side": side,
        "method": method,
        "tokens_per_s": tokens / seconds,
        "mfu": flops_per_token * tokens / seconds / PEAK_FLOPS if setup.cuda else None,
        "peak_gib": CAPTURE["peak_bytes"] / GiB if CAPTURE["peak_bytes"] is not None else None,
        "window_s": seconds,
        "wall_s": wall,
        "tokens": tokens,
        "row_tokens": CAPTURE["row_tokens"],
        "matmul_parameters": CAPTURE["matmul_parameters"],
        "trained_parameters": CAPTURE["trained_parameters"],
        "loss": CAPTURE["loss"],
        "attention": CAPTURE["attention"],
    }
    print(
        f"[bench/gpu] {side:4s} {method:4s}: {result['tokens_per_s']:,.0f} tokens/s over {setup.steps} steps "
        f"({seconds:.2f}s; whole run {wall:.1f}s)",
        flush=True,
    )
    return result


def _percent(value: float | None) -> str:
    return f"{value:.1%}" if value is not None else "n/a"


def _gib(value: float | None) -> str:
    return f"{value:.1f}" if value is not None else "n/a"


def print_table(results: list[dict], setup: Setup) -> dict:
    """The per-run table and ours / TRL per method; returns the ratios."""
    print(
        f"\nbench/gpu.py: Llama {setup.body['hidden_size']}x{setup.body['num_hidden_layers']} "
        f"({results[0]['matmul_parameters'] / 1e9:.2f} B matmul parameters), {setup.dtype}, {setup.attention}, "
        f"packed rows of {setup.max_length}, batch {setup.batch}, {setup.steps} timed steps after {setup.warmup_steps}"
    )
    print(f"{'run':12s}{'tokens/s':>12s}{'MFU':>8s}{'peak GiB':>10s}{'loss':>9s}{'trained':>14s}")
    for run in results:
        loss = f"{run['loss']:.3f}" if run["loss"] is not None else "n/a"
        print(
            f"{run['side'] + ' ' + run['method']:12s}{run['tokens_per_s']:>12,.0f}{_percent(run['mfu']):>8s}"
            f"{_gib(run['peak_gib']):>10s}{loss:>9s}{run['trained_parameters']:>14,d}"
        )
    ratios = {}
    for method in dict.fromkeys(run["method"] for run in results):
        ours, trl = (next(r for r in results if r["side"] == s and r["method"] == method) for s in ("ours", "trl"))
        ratios[method] = ours["tokens_per_s"] / trl["tokens_per_s"]
        memory = (
            f", peak memory {ours['peak_gib'] / trl['peak_gib']:.2f}x" if ours["peak_gib"] and trl["peak_gib"] else ""
        )
        print(f"ours / TRL, {method}: tokens/s {ratios[method]:.2f}x (goal >= 1.0){memory}")
    full = next((r for r in results if r["side"] == "ours" and r["method"] == "full"), None)
    if full and full["mfu"] is not None:
        print(f"ours full-SFT MFU: {full['mfu']:.1%} (goal >= 40%)")
    return ratios


def write_results(results: list[dict], ratios: dict, setup: Setup, out: Path | None) -> None:
    import torch

    if out is None:
        return
    out.mkdir(parents=True, exist_ok=True)
    document = {
        "setup": asdict(setup),
        "device": torch.cuda.get_device_name() if setup.cuda else "cpu",
        "torch": torch.__version__,
        "peak_flops": PEAK_FLOPS,
        "runs": results,
        "ours_over_trl_tokens_per_s": ratios,
    }
    (out / "gpu-bench.json").write_text(json.dumps(document, indent=2), encoding="utf-8")
    print(f"results: {out / 'gpu-bench.json'}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="a tiny fp32 model, a few steps: checks the script")
    parser.add_argument("--methods", nargs="+", choices=("full", "lora"), default=["full", "lora"])
    parser.add_argument("--steps", type=int, help="timed optimizer steps (default 30; smoke 2)")
    parser.add_argument("--warmup-steps", type=int, help="untimed steps before them (default 5; smoke 1)")
    parser.add_argument("--batch", type=int, help="packed rows per step (default 8; smoke 2)")
    parser.add_argument("--out", type=Path, default=Path(os.environ["OUT"]) if os.environ.get("OUT") else None)
    args = parser.parse_args(argv)

    import transformers

    transformers.logging.set_verbosity_error()
    setup = choose_setup(args)
    with tempfile.TemporaryDirectory(prefix="bench-gpu-") as scratch:
        root = Path(scratch)
        data = write_data(root / "data.jsonl", setup.conversations)
        model_dir = build_base_model(root, data, setup)
        install_train_probe(setup)
        results = []
        for method in args.methods:
            for side, run in (("ours", run_ours), ("trl", run_trl)):
                job = functools.partial(run, root, f"{side}-{method}", data, model_dir, setup, method == "lora")
                results.append(measure(side, method, job, setup))
        ratios = print_table(results, setup)
    write_results(results, ratios, setup, args.out)


if __name__ == "__main__":
    main()
