"""Quantization section (`quant_conf`).

The BitsAndBytes options mirror `transformers.BitsAndBytesConfig`; the model loader builds that object from them.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Discriminator, Field, Tag, model_validator

from finetuning.config._base import Float, StrictModel


class NoQuantizationConfig(StrictModel):
    """A marker not to use quantization."""

    quantization_type: Literal["no-quantization"] = Field("no-quantization", description="Selects no quantization.")


class BnBQuantizationConfig(StrictModel):
    """Bits and Bytes configuration.

    See https://huggingface.co/docs/transformers/en/main_classes/quantization#transformers.BitsAndBytesConfig
    """

    quantization_type: Literal["bits-and-bytes"] = Field("bits-and-bytes", description="Selects BitsAndBytes.")
    load_in_8bit: bool = Field(False, description="Load the model weights in 8 bit (LLM.int8).")
    load_in_4bit: bool = Field(False, description="Load the model weights in 4 bit (QLoRA style).")
    llm_int8_threshold: Float = Field(6.0, description="Outlier threshold for LLM.int8.")
    llm_int8_skip_modules: list[str] | None = Field(None, description="Modules not to convert to 8 bit.")
    llm_int8_enable_fp32_cpu_offload: bool = Field(False, description="Keep offloaded parts in fp32 on the CPU.")
    llm_int8_has_fp16_weight: bool = Field(False, description="Keep fp16 main weights for LLM.int8.")
    bnb_4bit_compute_dtype: str | None = Field(None, description="Compute dtype for 4 bit layers, e.g. bfloat16.")
    bnb_4bit_quant_type: Literal["fp4", "nf4"] = Field("fp4", description="4 bit data type: fp4 or nf4.")
    bnb_4bit_use_double_quant: bool = Field(False, description="Quantize the quantization constants as well.")
    bnb_4bit_quant_storage: str | None = Field(None, description="Storage dtype of the packed 4 bit weights.")

    @model_validator(mode="after")
    def _one_bit_width(self) -> BnBQuantizationConfig:
        if self.load_in_4bit and self.load_in_8bit:
            raise ValueError("load_in_4bit and load_in_8bit are both true; choose one")
        if not (self.load_in_4bit or self.load_in_8bit):
            # BitsAndBytes then quantizes nothing, while the engine would still treat the model as quantized.
            raise ValueError("bits-and-bytes needs load_in_4bit: true or load_in_8bit: true (or drop quant_conf)")
        return self


def _quant_tag(value: Any) -> str | None:
    # `quantization_type` is optional in the schema, so the plain field discriminator cannot be used:
    # a mapping without it means no quantization, unless it carries BitsAndBytes options.
    if isinstance(value, dict):
        kind = value.get("quantization_type")
        if kind is None:
            return "BnBQuantizationConfig" if value else "NoQuantizationConfig"
        return {"bits-and-bytes": "BnBQuantizationConfig", "no-quantization": "NoQuantizationConfig"}.get(kind)
    if isinstance(value, (BnBQuantizationConfig, NoQuantizationConfig)):
        return type(value).__name__
    return None


QuantizationConfig = Annotated[
    Annotated[BnBQuantizationConfig, Tag("BnBQuantizationConfig")]
    | Annotated[NoQuantizationConfig, Tag("NoQuantizationConfig")],
    Discriminator(
        _quant_tag,
        custom_error_type="quantization_type",
        custom_error_message="quantization_type must be 'bits-and-bytes' or 'no-quantization'",
    ),
]
