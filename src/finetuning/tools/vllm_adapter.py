"""`create_vllm_compatible_adapter [--training-config CFG] model_path`: drop adapter tensors vLLM cannot load.

vLLM loads only the LoRA matrices of an adapter; full embedding / output layers saved beside them (PEFT does this
when the embeddings were resized) make it refuse the adapter. Those tensors are removed in place, safely: the
original file is kept as `old_with_extra_layers_adapter_model.safetensors` and the new file is written to a temporary
name, then swapped in, so an interruption never leaves a broken adapter. Running it twice changes nothing.

Stripping is refused where those tensors are *trained* weights the adapter needs: full fine-tuning (nothing to
strip), a vocabulary that grew during training, or `modules_to_save`. Such adapters are served merged instead.

Exit codes: 0 when the adapter is vLLM-compatible afterwards (stripped, or nothing to strip), 1 when stripping was
refused (the adapter is left as it is and is not vLLM-compatible), 2 for a user error.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

from ..errors import UserError, report_user_error

WEIGHTS = "adapter_model.safetensors"
BACKUP = "old_with_extra_layers_adapter_model.safetensors"
NOT_COMPATIBLE_EXIT = 1  # stripping refused (2 stays for user errors: a missing adapter, a bad config)


@dataclass(frozen=True)
class Decision:
    strip: bool
    reason: str


def decide(adapter_dir: Path, training_config: str | None) -> Decision:
    """Whether stripping is safe, and why — from the training config when given, else from the adapter itself."""
    adapter_config = json.loads((adapter_dir / "adapter_config.json").read_text())
    if training_config is not None:
        from ..config import load_any_config

        cfg = load_any_config(training_config)
        if cfg.peft_conf.peft_type == "NO_PEFT":
            return Decision(False, "the training config has peft_type NO_PEFT: a full model, not an adapter")
        new_base = getattr(getattr(cfg, "sft_args", None), "save_name_if_new_basemodel", None)
        if new_base and (Path(cfg.training_args["output_dir"]) / new_base).is_dir():
            return Decision(
                False,
                f"the vocabulary grew during training ({Path(cfg.training_args['output_dir']) / new_base} exists): the "
                "adapter's embedding and output layers are trained weights; merge the adapter instead (merge_adapter)",
            )
        if getattr(cfg.peft_conf, "peft_kwargs", {}).get("modules_to_save"):
            return Decision(False, "the training config sets peft_kwargs.modules_to_save: those layers were trained")
    if adapter_config.get("modules_to_save"):
        return Decision(
            False,
            f"the adapter saves trained full layers (modules_to_save: {adapter_config['modules_to_save']}); "
            "removing them would lose training — merge the adapter instead (merge_adapter)",
        )
    return Decision(True, "only LoRA matrices are trained in this adapter; extra full layers are copies of the base")


def strip_extra_layers(adapter_dir: Path) -> list[str]:
    """Remove every tensor without `.lora_` from the adapter weights; return the removed names."""
    from safetensors import safe_open
    from safetensors.torch import save_file

    weights = adapter_dir / WEIGHTS
    with safe_open(str(weights), framework="pt") as handle:
        names = list(handle.keys())  # noqa: SIM118 - safe_open is not a dict
        metadata = handle.metadata()
        kept = {name: handle.get_tensor(name) for name in names if ".lora_" in name}
    removed = [name for name in names if name not in kept]
    if not removed:
        return []
    temporary = adapter_dir / f".{WEIGHTS}.tmp"
    save_file(kept, str(temporary), metadata=metadata)
    backup = adapter_dir / BACKUP
    if not backup.exists():
        shutil.copy2(weights, adapter_dir / f".{BACKUP}.tmp")
        os.replace(adapter_dir / f".{BACKUP}.tmp", backup)
    os.replace(temporary, weights)  # atomic: readers see the old file or the new one, never half of one
    return removed


def make_vllm_compatible(model_path: str, training_config: str | None = None) -> tuple[Decision, list[str]]:
    adapter_dir = Path(model_path)
    if not (adapter_dir / "adapter_config.json").is_file() or not (adapter_dir / WEIGHTS).is_file():
        raise UserError(f"model_path: {adapter_dir.resolve()}: no adapter_config.json / {WEIGHTS} there")
    decision = decide(adapter_dir, training_config)
    return decision, strip_extra_layers(adapter_dir) if decision.strip else []


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="create_vllm_compatible_adapter",
        description="Take in a HuggingFace adapter's binary folder path and remove the embeddings layer weights "
        "required for vLLM compatibility",
    )
    parser.add_argument("model_path", help="Path to the model folder (e.g. path to the folder containing the adapter)")
    parser.add_argument(
        "--training-config", help="Path to training config to check and determine whether the layers should be removed."
    )
    args = parser.parse_args(argv)
    try:
        decision, removed = make_vllm_compatible(args.model_path, args.training_config)
    except UserError as error:
        return report_user_error(error)
    if not decision.strip:
        # Non-zero: a pipeline must not go on to hand this adapter to vLLM, which would refuse or mis-serve it.
        print(f"error: not made vLLM-compatible, the adapter is kept as it is: {decision.reason}", file=sys.stderr)
        return NOT_COMPATIBLE_EXIT
    if removed:
        print(f"removed {len(removed)} non-LoRA tensors ({decision.reason}); original kept as {BACKUP}")
    else:
        print("nothing to remove: the adapter already holds only LoRA matrices")
    return 0


if __name__ == "__main__":
    sys.exit(main())
