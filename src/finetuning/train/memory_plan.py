"""Which sharding fits which model on which GPU: per-GPU memory of the training state (weights, gradients, optimizer
state) for a few published model shapes, methods (full fine-tuning, LoRA, QLoRA) and sharding set-ups.

Built on the pre-flight's checkpoint estimate (train/checkpoint_size.py): the checkpoint is the weights being trained
plus their optimizer state, with the same bytes per parameter (`dtype_bytes`, `optimizer_state_bytes`,
`ADAPTER_WEIGHT_BYTES`); training holds that, the gradients of the trained weights and, with an adapter, the frozen
base. Activations depend on batch and sequence length, not on the model alone, so they are not counted: the table
says what must fit before the first batch. Pure Python (no torch), so the docs can be generated anywhere:

    python -m finetuning.train.memory_plan --markdown                 # print the table
    python -m finetuning.train.memory_plan --update docs/multi-gpu.md # rewrite the table in the page
"""

from __future__ import annotations

import argparse
import math
import sys
from dataclasses import dataclass
from pathlib import Path

from .checkpoint_size import ADAPTER_WEIGHT_BYTES, CheckpointEstimate, dtype_bytes, optimizer_state_bytes

GB = 1000**3  # model sizes are counted in 10^9 parameters, so memory in 10^9 bytes reads off directly
GPU_GB = (24, 48, 80, 141)  # RTX 4090 / A10G, L40S / A6000, A100 / H100, H200
# A set-up fits a GPU when its state takes at most this share of the card: the CUDA context, the allocator's
# fragmentation and the activations need the rest.
USABLE_SHARE = 0.9
SHARDS = 8  # GPUs in one node
# FSDP / ZeRO-3 gather one unit's full weights for its forward and backward, and prefetch the next one.
GATHERED_UNITS = 2
COMPUTE_DTYPE = "bfloat16"  # what gathered weights and a frozen base are kept in
MASTER_DTYPE = "float32"  # full fine-tuning: fp32 master weights and gradients, bf16 autocast
OPTIMIZER = "adamw_torch"
LORA_RANK = 16
# bitsandbytes nf4: 4 bits a weight, plus one fp32 absmax per 64 weights, itself quantized to 8 bits with an fp32
# constant per 256 blocks (double quantization): 0.5 + 1/64 + 4/(64*256) bytes a weight.
NF4_BYTES = 0.5 + 1 / 64 + 4 / (64 * 256)
METHODS = ("full", "LoRA", "QLoRA")


@dataclass(frozen=True)
class ModelShape:
    """A decoder's sizes, as in its config.json (Llama-style: grouped-query attention, gated MLP)."""

    name: str
    hidden: int
    layers: int
    heads: int
    kv_heads: int
    intermediate: int
    vocab: int
    tied_embeddings: bool

    @property
    def kv_width(self) -> int:
        return self.hidden // self.heads * self.kv_heads

    def linear_shapes(self) -> list[tuple[int, int]]:
        """(in, out) of one decoder layer's linear layers: q, k, v, o, gate, up, down (what LoRA all-linear wraps)."""
        h, kv, i = self.hidden, self.kv_width, self.intermediate
        return [(h, h), (h, kv), (h, kv), (h, h), (h, i), (h, i), (i, h)]

    @property
    def layer_linear_parameters(self) -> int:
        return sum(fan_in * fan_out for fan_in, fan_out in self.linear_shapes())

    @property
    def embedding_parameters(self) -> int:
        return self.vocab * self.hidden * (1 if self.tied_embeddings else 2)

    @property
    def parameters(self) -> int:
        norms = (2 * self.layers + 1) * self.hidden
        return self.layers * self.layer_linear_parameters + self.embedding_parameters + norms

    @property
    def largest_unit(self) -> int:
        """Parameters of the largest piece FSDP / ZeRO-3 gathers at once: a decoder layer or the embedding."""
        return max(self.layer_linear_parameters + 2 * self.hidden, self.vocab * self.hidden)

    def lora_parameters(self, rank: int = LORA_RANK) -> int:
        """LoRA on every linear layer of the decoder: r x (in + out) each."""
        return self.layers * sum(rank * (fan_in + fan_out) for fan_in, fan_out in self.linear_shapes())


# Published configs (hidden, layers, heads, kv heads, intermediate, vocab, tied embeddings).
MODELS = (
    ModelShape("0.5B (Qwen2.5-0.5B)", 896, 24, 14, 2, 4864, 151936, True),
    ModelShape("1B (Llama-3.2-1B)", 2048, 16, 32, 8, 8192, 128256, True),
    ModelShape("3B (Llama-3.2-3B)", 3072, 28, 24, 8, 8192, 128256, True),
    ModelShape("8B (Llama-3.1-8B)", 4096, 32, 32, 8, 14336, 128256, False),
    ModelShape("13B (Llama-2-13B)", 5120, 40, 40, 40, 13824, 32000, False),
    ModelShape("34B (CodeLlama-34B)", 8192, 48, 64, 8, 22016, 32000, False),
    ModelShape("70B (Llama-3.1-70B)", 8192, 80, 64, 8, 28672, 128256, False),
)


@dataclass(frozen=True)
class TrainingState:
    """Bytes one replica of a run holds before activations: what it trains (as its checkpoint), their gradients,
    and the frozen weights an adapter sits on."""

    checkpoint: CheckpointEstimate
    gradient_bytes: int
    frozen_bytes: int

    @property
    def total_bytes(self) -> int:
        return self.checkpoint.total_bytes + self.gradient_bytes + self.frozen_bytes

    @property
    def weight_bytes(self) -> int:
        return self.checkpoint.weights_bytes + self.frozen_bytes


def full_training_state(parameters: int, optim: str = OPTIMIZER) -> TrainingState:
    """Every weight trained in fp32 (bf16 autocast): the checkpoint estimate of `torch_dtype: float32` (4 bytes a
    weight + the optimizer's 8), plus an fp32 gradient each: 16 bytes a parameter with AdamW."""
    master = dtype_bytes(MASTER_DTYPE)
    checkpoint = CheckpointEstimate(
        parameters, parameters, parameters * master, parameters * optimizer_state_bytes(optim), "full"
    )
    return TrainingState(checkpoint, gradient_bytes=parameters * master, frozen_bytes=0)


def adapter_training_state(parameters: int, adapter: int, frozen_bytes: int, optim: str = OPTIMIZER) -> TrainingState:
    """An adapter of `adapter` parameters (fp32, as PEFT keeps it, with an fp32 gradient) on a frozen base."""
    checkpoint = CheckpointEstimate(
        parameters, adapter, adapter * ADAPTER_WEIGHT_BYTES, adapter * optimizer_state_bytes(optim), "adapter"
    )
    return TrainingState(checkpoint, gradient_bytes=adapter * ADAPTER_WEIGHT_BYTES, frozen_bytes=frozen_bytes)


def training_state(model: ModelShape, method: str) -> TrainingState:
    """full: 16 bytes a parameter; LoRA: the base in bf16; QLoRA: the decoder's linear layers in nf4, embeddings
    and norms in bf16 (bitsandbytes quantizes linear layers only, never the output layer)."""
    if method == "full":
        return full_training_state(model.parameters)
    compute = dtype_bytes(COMPUTE_DTYPE)
    if method == "LoRA":
        frozen = model.parameters * compute
    elif method == "QLoRA":
        quantized = model.layers * model.layer_linear_parameters
        frozen = math.ceil(quantized * NF4_BYTES) + (model.parameters - quantized) * compute
    else:
        raise ValueError(f"method: {method!r}; expected one of {', '.join(METHODS)}")
    return adapter_training_state(model.parameters, model.lora_parameters(), frozen)


@dataclass(frozen=True)
class Placement:
    """Per-GPU bytes of a sharding set-up, and the host memory it needs per node (offload)."""

    gpu_bytes: int
    host_bytes: int = 0


def gathered_bytes(model: ModelShape) -> int:
    """What FSDP / ZeRO-3 hold unsharded at once: GATHERED_UNITS of the largest unit, in the compute dtype."""
    return GATHERED_UNITS * model.largest_unit * dtype_bytes(COMPUTE_DTYPE)


def placements(model: ModelShape, state: TrainingState, shards: int = SHARDS) -> dict[str, Placement]:
    """DDP: everything on every GPU. ZeRO-2 / SHARD_GRAD_OP: weights whole, gradients and optimizer state split.
    FSDP FULL_SHARD / ZeRO-3: all split, plus the gathered units. ZeRO-3 with parameter and optimizer offload: the
    GPU keeps the gathered units, the node's memory the whole state (all its GPUs' shards)."""
    sharded = state.checkpoint.optimizer_bytes + state.gradient_bytes
    return {
        "DDP": Placement(state.total_bytes),
        f"ZeRO-2 ×{shards}": Placement(state.weight_bytes + math.ceil(sharded / shards)),
        f"FSDP / ZeRO-3 ×{shards}": Placement(math.ceil(state.total_bytes / shards) + gathered_bytes(model)),
        f"ZeRO-3 offload ×{shards}": Placement(gathered_bytes(model), host_bytes=state.total_bytes),
    }


def smallest_gpu(size: int) -> int | None:
    """The smallest of GPU_GB whose usable share holds `size` bytes, or None."""
    return next((gpu for gpu in GPU_GB if size <= gpu * GB * USABLE_SHARE), None)


def _cell(placement: Placement) -> str:
    gpu = smallest_gpu(placement.gpu_bytes)
    text = f"{placement.gpu_bytes / GB:.1f} → " + (f"{gpu} GB" if gpu else "✗")
    if placement.host_bytes:
        text += f" (+{placement.host_bytes / GB:.0f} GB RAM)"
    return text


def _count(parameters: int) -> str:
    return f"{parameters / 1e9:.2f} B" if parameters >= 1e9 else f"{parameters / 1e6:.0f} M"


CAPTION = (
    f"Per-GPU memory of the training state in GB (10^9 bytes) → the smallest of {', '.join(map(str, GPU_GB))} GB "
    f"GPUs it fits in (at most {USABLE_SHARE:.0%} of the card), ✗: none. **Activations are not counted** (they grow "
    "with batch × sequence length: activation checkpointing and a smaller per-device batch shrink them), nor the "
    "CUDA context. Full fine-tuning: AdamW, fp32 master weights, gradients and states, bf16 compute: 16 bytes a "
    f"parameter. LoRA: r={LORA_RANK} on every linear layer (fp32 adapter, gradients and AdamW states) on a bf16 "
    "base; QLoRA: the same on an nf4 base (embeddings and output layer stay bf16). Sharded over "
    f"{SHARDS} GPUs: ZeRO-2 / SHARD_GRAD_OP splits gradients and optimizer state; FSDP FULL_SHARD / ZeRO-3 splits "
    f"everything and gathers {GATHERED_UNITS} units (a decoder layer or the embedding, bf16) at a time; ZeRO-3 "
    "offload keeps only those on the GPU and the whole state in the node's RAM (shown). Computed by "
    "`python -m finetuning.train.memory_plan` from the pre-flight's checkpoint estimate (train/checkpoint_size.py)."
)
BEGIN = "<!-- memory-table: generated by `python -m finetuning.train.memory_plan --update docs/multi-gpu.md` -->"
END = "<!-- /memory-table -->"


def markdown_table() -> str:
    """The table with its caption, as docs/multi-gpu.md holds it."""
    columns = list(placements(MODELS[0], training_state(MODELS[0], "full")))
    lines = [
        "| model | parameters | method | trained | " + " | ".join(columns) + " |",
        "|---|---:|---|---:|" + "---:|" * len(columns),
    ]
    for model in MODELS:
        for method in METHODS:
            state = training_state(model, method)
            cells = [_cell(placement) for placement in placements(model, state).values()]
            lines.append(
                f"| {model.name} | {_count(model.parameters)} | {method} | "
                f"{_count(state.checkpoint.trainable_parameters)} | " + " | ".join(cells) + " |"
            )
    return "\n".join([*lines, "", CAPTION])


def generated_block() -> str:
    return f"{BEGIN}\n{markdown_table()}\n{END}"


def update_page(path: Path) -> bool:
    """Replace the generated block in `path` (between BEGIN and END); True if the file changed."""
    text = path.read_text(encoding="utf-8")
    start, end = text.find(BEGIN), text.find(END)
    if start < 0 or end < start:
        raise SystemExit(f"{path}: no generated memory table to replace (the lines {BEGIN!r} ... {END!r})")
    updated = text[:start] + generated_block() + text[end + len(END) :]
    if updated == text:
        return False
    path.write_text(updated, encoding="utf-8")
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--markdown", action="store_true", help="print the table in Markdown (the default)")
    parser.add_argument("--update", type=Path, metavar="PAGE", help="rewrite the generated table in PAGE")
    args = parser.parse_args(argv)
    if args.update:
        print(f"{args.update}: {'updated' if update_page(args.update) else 'up to date'}")
        return 0
    print(generated_block())
    return 0


if __name__ == "__main__":
    sys.exit(main())
