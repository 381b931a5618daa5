"""Spectrum (`spectrum`): full fine-tuning of the weight matrices with the highest signal-to-noise ratio only.

The reference method (arXiv 2406.06623, cognitivecomputations/spectrum; model/spectrum.py computes it): the SNR of
each weight matrix from its singular values against the Marchenko-Pastur noise edge, the top share per module
type trained, everything else frozen. It trains the chosen matrices themselves, so it needs full fine-tuning
(`peft_conf.peft_type: NO_PEFT`) and an unquantized model.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, field_validator

from finetuning.config._base import Float, Int, StrictModel


class SpectrumConfig(StrictModel):
    """Which weight matrices of the decoder layers are trained; every other parameter is frozen."""

    top_percent: Annotated[Float, Field(gt=0, le=100)] = Field(
        50.0,
        description=(
            "Per module type, the share (percent) of its matrices with the highest SNR that are trained: "
            "int(count x top_percent / 100) of them, at least 1. Spectrum's own top_percent; the sectioned dialect's "
            "snr_threshold s maps to (1 - s) x 100."
        ),
    )
    module_types: list[str] | None = Field(
        None,
        description=(
            "The weight types considered, named as after the layer index (model.layers.3.self_attn.q_proj → "
            "self_attn.q_proj, mlp.down_proj). null: every 2-D weight inside the decoder layers. A name the model "
            "does not have is an error when the model loads (`finetuning spectrum CONFIG` lists its types)."
        ),
    )
    layers: Literal["auto"] | list[Annotated[Int, Field(ge=0)]] = Field(
        "auto",
        description=(
            "auto: chosen by SNR (top_percent per module type). A list of layer indices: exactly those layers' "
            "matrices of module_types are trained, top_percent is not used and no SNR is computed (no SVDs)."
        ),
    )
    train_embeddings: bool = Field(False, description="Also train the input embeddings (embed_tokens).")
    train_lm_head: bool = Field(
        False,
        description="Also train the output projection (lm_head); with tied embeddings that is the embedding matrix.",
    )

    @field_validator("module_types")
    @classmethod
    def _some_types(cls, value: list[str] | None) -> list[str] | None:
        if value is not None and not value:
            raise ValueError("must name at least one module type, or be null for all of them")
        return value

    @field_validator("layers")
    @classmethod
    def _some_layers(cls, value):
        if isinstance(value, list):
            if not value:
                raise ValueError("must list at least one layer index, or be auto")
            if len(set(value)) != len(value):
                raise ValueError(f"lists a layer twice: {value}")
        return value


def spectrum_problem(spectrum: SpectrumConfig | None, peft_type: str, quantized: bool) -> str | None:
    """Spectrum trains the chosen matrices themselves: an adapter would train something else, and a quantized
    model's weights cannot be trained (its SNR could be computed on dequantized weights, but nothing could use it)."""
    if spectrum is None:
        return None
    if quantized:
        return (
            "spectrum: trains the selected weight matrices in full precision, and quant_conf loads a quantized model "
            "whose weights cannot be trained; drop quant_conf (or drop spectrum and train an adapter such as LORA)"
        )
    if peft_type != "NO_PEFT":
        return (
            f"spectrum: needs full fine-tuning (peft_conf.peft_type: NO_PEFT), got peft_conf.peft_type {peft_type}; "
            "Spectrum trains the selected matrices themselves: set NO_PEFT or drop spectrum"
        )
    return None
