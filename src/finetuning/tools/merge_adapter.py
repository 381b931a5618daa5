"""`merge_adapter basemodel peftmodel outpath`: fold a PEFT adapter into its base model and save one plain model.

The merged model keeps the base model's dtype (no silent fp32 doubling), loads with plain transformers, and stops
generating at the tokenizer's end token. Adapters trained with a grown vocabulary carry their full embedding and
output layers (`modules_to_save`); the base is resized to match before the adapter is applied, so merging onto
either the original base or `checkpoint-new-basemodel` gives the same model.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from ..errors import UserError, report_user_error

logger = logging.getLogger(__name__)


def parse_device_map(value: str | None):
    """'auto' / 'cpu' / 'cuda' / 'cuda:1' as they are; anything starting with '{' is a JSON device map."""
    if value is None:
        return None
    if value.strip().startswith("{"):
        try:
            return json.loads(value)
        except json.JSONDecodeError as error:
            raise UserError(f"--device_map: not valid JSON ({error.msg} at column {error.colno})") from None
    return value


def _adapter_embedding_rows(adapter_dir: Path) -> int | None:
    """Rows of the input embedding the adapter saved in full (modules_to_save / save_embedding_layers), if any."""
    from safetensors import safe_open

    weights = adapter_dir / "adapter_model.safetensors"
    if not weights.is_file():
        return None
    with safe_open(str(weights), framework="pt") as handle:
        for name in handle.keys():  # noqa: SIM118 - safe_open is not a dict
            if "embed_tokens" in name and ".lora_" not in name:
                return handle.get_slice(name).get_shape()[0]
    return None


def _load_tokenizer(tokenizer: str | None, adapter_dir: Path, basemodel: str):
    from transformers import AutoTokenizer

    source = tokenizer or (str(adapter_dir) if (adapter_dir / "tokenizer_config.json").is_file() else basemodel)
    return AutoTokenizer.from_pretrained(source, trust_remote_code=False)


def write_merged_card(out: Path, basemodel: str, adapter_dir: Path) -> None:
    """Our model card for the merged model, with the training settings when the adapter came from this engine."""
    import yaml

    from ..model.loading import base_model_reference
    from ..train.model_card import write_model_card
    from ..train.saving import RESOLVED_CONFIG_NAME

    resolved = None
    if (adapter_dir / RESOLVED_CONFIG_NAME).is_file():
        resolved = yaml.safe_load((adapter_dir / RESOLVED_CONFIG_NAME).read_text(encoding="utf-8"))
    adapter = str(adapter_dir.expanduser().resolve())
    write_model_card(out, "merged", base_model_reference(basemodel), resolved, adapter=adapter)


def merge_adapter(basemodel: str, peftmodel: str, outpath: str, tokenizer: str | None = None, device_map=None) -> Path:
    import peft
    from transformers import AutoModelForCausalLM

    from ..model.adapter_dir import adapter_dir_as_model_problem
    from ..train.saving import set_generation_stop

    adapter_dir = Path(peftmodel)
    if problem := adapter_dir_as_model_problem(basemodel, "basemodel", "peftmodel"):
        raise UserError(problem)  # before loading: transformers would fail deep inside its PEFT integration
    if not (adapter_dir / "adapter_config.json").is_file():
        raise UserError(f"peftmodel: {adapter_dir.resolve()}: no adapter_config.json there (not a PEFT adapter)")
    try:
        # never run code shipped with a model; weights as safetensors when the base has them (the library's choice)
        model = AutoModelForCausalLM.from_pretrained(
            basemodel, dtype="auto", device_map=device_map, trust_remote_code=False
        )
    except OSError as error:
        raise UserError(f"basemodel: could not load {basemodel!r}: {error}") from None
    dtype = model.dtype
    rows = _adapter_embedding_rows(adapter_dir)
    if rows is not None and rows != model.get_input_embeddings().weight.shape[0]:
        logger.info("the adapter carries a %d-token vocabulary: resizing the base model to match", rows)
        model.resize_token_embeddings(rows, mean_resizing=False)  # every row is replaced by the adapter's
    model = peft.PeftModel.from_pretrained(model, str(adapter_dir))
    merged = model.merge_and_unload(safe_merge=True)
    merged = merged.to(dtype)
    tok = _load_tokenizer(tokenizer, adapter_dir, basemodel)
    set_generation_stop(merged, tok, tok.eos_token)
    out = Path(outpath)
    merged.save_pretrained(out)
    tok.save_pretrained(out)
    write_merged_card(out, basemodel, adapter_dir)
    logger.info("merged model (%s) saved to %s", str(dtype).replace("torch.", ""), out)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="merge_adapter", description="Merges adapters into a base model and saves the output as a single model"
    )
    parser.add_argument("basemodel", help="Name (e.g. HuggingFace Hub id) or Path of Base Model")
    parser.add_argument("peftmodel", help="Name or Path of Peft adapter")
    parser.add_argument("outpath", help="Where to save the merged model")
    parser.add_argument(
        "--tokenizer",
        help="Name or Path to tokenizer to save with the model. If not specified, will use the adapter model tokenizer.",
    )
    parser.add_argument(
        "--device_map", help="Device map for loading the model. Can be 'auto', 'cpu', 'cuda' or a JSON string."
    )
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S"
    )
    try:
        out = merge_adapter(
            args.basemodel, args.peftmodel, args.outpath, args.tokenizer, parse_device_map(args.device_map)
        )
    except UserError as error:
        return report_user_error(error)
    print(f"Merged model saved to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
