"""SFT specific arguments (`sft_args`)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Discriminator, Field, Tag, ValidationInfo, field_validator, model_validator

from finetuning.config._base import DirectoryName, Int, StrictModel

LengthHandling = Literal["filter", "truncate", "error"]
PackingStrategy = Literal["bfd", "chunk"]
CHUNK_ONLY = ("overlap", "per_example")


class PackingConfig(StrictModel):
    """How examples are packed into rows of at most `sft_args.max_seq_length` tokens (`sft_args.packing`)."""

    strategy: PackingStrategy = Field(
        "bfd",
        description=(
            "'bfd': whole examples are packed into rows by best-fit-decreasing (TRL's pack_dataset); an example is "
            "never cut. 'chunk': the token stream is cut into max_seq_length windows (VectorLM's 'full'; with "
            "per_example, its 'partial'); an example may be split across rows."
        ),
    )
    overlap: Int = Field(
        0,
        ge=0,
        description=("chunk only: tokens that consecutive windows share (trained in both); less than max_seq_length."),
    )
    per_example: bool = Field(
        False,
        description="chunk only: cut each example into windows alone, never joining two examples in one row.",
    )
    separate_documents: bool = Field(
        True,
        description=(
            "Position ids restart at each example and no token attends across an example boundary (padding-free "
            "batches with no attention mask; the first label of each example is not trained). false: the examples "
            "of a row see each other and positions run on, as in VectorLM's 'full' packing."
        ),
    )

    @model_validator(mode="after")
    def _chunk_only_keys(self) -> PackingConfig:
        if self.strategy != "chunk":
            for key in CHUNK_ONLY:
                if key in self.model_fields_set:
                    raise ValueError(
                        f"{key} applies to strategy 'chunk' only, the strategy is {self.strategy!r}; "
                        f"drop {key} or set strategy: chunk"
                    )
        return self


def _packing_kind(value) -> str | None:
    """Which member of `Packing` a value is meant as, so that an error names only that member's problem."""
    if value is False:
        return "off"
    return "PackingConfig" if isinstance(value, (dict, PackingConfig)) else None


Packing = Annotated[
    Annotated[Literal[False], Tag("off")] | Annotated[PackingConfig, Tag("PackingConfig")],
    Discriminator(
        _packing_kind,
        custom_error_type="packing",
        custom_error_message="must be true, false or a mapping {strategy, overlap, per_example, separate_documents}",
    ),
]


class SFTArguments(StrictModel):
    """Supervised fine-tuning arguments."""

    max_seq_length: Int = Field(
        2048,
        ge=1,
        description="Maximum input sequence length; longer examples are dropped, truncated or refused (length_handling).",
    )
    length_handling: LengthHandling = Field(
        "filter",
        description=(
            "What happens to examples longer than max_seq_length: 'filter' drops them, 'truncate' keeps their first "
            "max_seq_length tokens (labels cut the same way); either way the run summary counts them. 'error': any "
            "is a data error before training, listing the first 20 by file:line (axolotl's excess_length_strategy: "
            "raise)."
        ),
    )
    save_name_if_new_basemodel: DirectoryName = Field(
        "checkpoint-new-basemodel", description="If a new basemodel is saved, it will be saved with this name"
    )
    train_on_completions_only: bool = Field(False, description="Only compute loss on the assistant's turns.")
    packing: Packing = Field(
        False,
        description=(
            "Pack several examples into each row of at most max_seq_length tokens, after length handling "
            "(padding would otherwise waste most of the compute on short examples). false: one example per row; "
            "true: {strategy: bfd}; or a mapping {strategy, overlap, per_example, separate_documents}. Completion "
            "masks are packed with the tokens. With separate_documents, run_conf.model_args.attn_implementation "
            "must separate documents: sdpa, eager, flex_attention, flash_attention_2/3 or a kernels-community "
            "varlen kernel."
        ),
    )
    eval_packing: bool = Field(
        True,
        description="With packing, pack the validation data the same way; false: validation examples one per row.",
    )

    @field_validator("packing", mode="before")
    @classmethod
    def _packing_true(cls, value):
        """`packing: true` is shorthand for the default strategy."""
        return PackingConfig() if value is True else value

    @field_validator("packing")
    @classmethod
    def _overlap_fits(cls, value, info: ValidationInfo):
        """Windows sharing max_seq_length tokens or more would never move on."""
        max_seq_length = info.data.get("max_seq_length")
        if value and max_seq_length is not None and value.overlap >= max_seq_length:
            raise ValueError(
                f"overlap {value.overlap} must be less than sft_args.max_seq_length ({max_seq_length}): each "
                "window must move on by at least one token"
            )
        return value


# Attention implementations that keep packed documents apart: the varlen kernels through cu_seq_lens, the masked ones
# (sdpa, eager, flex) through the block-diagonal mask transformers builds from position_ids when no attention mask is
# passed (the padding-free collator passes none). Unset means transformers' default, sdpa (eager where unsupported).
SEPARATING_ATTENTION = ("sdpa", "eager", "flex_attention", "flash_attention_2", "flash_attention_3")
HUB_KERNELS = "kernels-community/"


def packing_attention_problem(packing, attn_implementation: str | None, parallelism_config=None) -> str | None:
    """`sft_args.packing` with separate_documents and an attention implementation that would let packed documents
    attend to each other (e.g. a paged or custom one), or with context parallelism, whose sequence shards do not
    follow the document boundaries."""
    if not packing or not packing.separate_documents:
        return None
    if isinstance(parallelism_config, dict):
        context_parallel = parallelism_config.get("cp_size") or 1
    else:
        context_parallel = getattr(parallelism_config, "cp_size", 1) or 1
    if context_parallel > 1:
        return (
            f"training_args.parallelism_config: context parallelism (cp_size {context_parallel}) cannot keep packed "
            "documents apart; set cp_size 1 or sft_args.packing: false"
        )
    if attn_implementation is None or attn_implementation in SEPARATING_ATTENTION:
        return None
    if attn_implementation.startswith(HUB_KERNELS):
        return None
    return (
        f"run_conf.model_args.attn_implementation: {attn_implementation!r} does not keep packed documents apart; "
        f"with sft_args.packing (separate_documents) use one of {', '.join(SEPARATING_ATTENTION)} or a "
        f"{HUB_KERNELS}... varlen kernel, or set sft_args.packing.separate_documents: false"
    )
