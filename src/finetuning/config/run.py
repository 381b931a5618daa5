"""Model and run section (`run_conf`)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BeforeValidator, ConfigDict, Field, field_validator, model_validator

from finetuning.config._base import DirectoryName, StrictModel


class ModelArguments(StrictModel):
    """Arguments passed to `AutoModelForCausalLM.from_pretrained`.

    Keys not listed here are allowed and passed to `from_pretrained` as they are, since the set of accepted
    arguments changes between transformers versions. Quantization is configured in `quant_conf`, not here.
    """

    model_config = ConfigDict(extra="allow")

    torch_dtype: str = Field(
        "auto",
        description=(
            "Weights dtype: 'auto' (the checkpoint's dtype), 'bfloat16', 'float16', 'float32'. "
            "Kept under its legacy name; the model loader passes it as `dtype` to current transformers."
        ),
    )
    device_map: dict[str, Any] | str | int | None = Field(
        None,
        description=(
            "Custom device map so that you can manually override the choices that HuggingFace would make. "
            'This can also be a string to specify "auto", "balanced_low_0", or "sequential". Unset: the engine '
            'decides ("auto" for a single process, the local process index with several processes).'
        ),
    )
    max_memory: dict[Any, Any] | None = Field(None, description="Maximum memory per device, e.g. {0: '20GiB'}.")
    low_cpu_mem_usage: bool = Field(False, description="Load the weights without first building a random model.")
    attn_implementation: str | None = Field(
        None, description='Note: this can be set to "sdpa", "flash_attention_2", "eager"'
    )
    offload_folder: str | None = Field(None, description="Folder to offload weights to, with a device map.")
    offload_state_dict: bool | None = Field(None, description="Default is True if offloading (otherwise no effect)")
    offload_buffers: bool | None = Field(None, description="Offload buffers together with the weights.")
    use_cache: bool = Field(
        True,
        description=(
            "Saves generated hidden states to speed up generation. "
            "use_cache is mutually exclusive with gradient_checkpointing"
        ),
    )
    cache_dir: str | None = Field(None, description="Hugging Face cache directory.")
    force_download: bool = Field(False, description="Download again even if cached.")
    local_files_only: bool = Field(False, description="Never download; use local files only.")
    proxies: dict[str, Any] | None = Field(None, description="Proxies for downloads, by protocol.")
    resume_download: bool = Field(False, description="Deprecated download option, kept for old configs.")
    revision: str = Field("main", description="Model revision (branch, tag or commit) on the Hub.")
    code_revision: str = Field("main", description="Revision of remote code, with trust_remote_code.")
    subfolder: str | None = Field(None, description="Subfolder of the model repository.")
    token: str | None = Field(None, description="Hugging Face access token (masked in saved configs).")
    use_safetensors: bool | None = Field(
        None,
        description="Unset or true: load safetensors weights only (a pickle-only model is refused before loading). "
        "false: also allow pickle weights (pytorch_model.bin), which can run code when loaded.",
    )
    variant: str | None = Field(None, description="Weights variant, e.g. fp16.")
    trust_remote_code: bool = Field(
        False, description="Warning: if set to `True`, allows execution of downloaded remote code"
    )

    @model_validator(mode="after")
    def _no_conflicting_extras(self) -> ModelArguments:
        extra = self.model_extra or {}
        if "quantization_config" in extra:
            raise ValueError("quantization_config is not allowed in model_args; use quant_conf")
        if "dtype" in extra and "torch_dtype" in self.model_fields_set:
            raise ValueError("both dtype and torch_dtype are given; use one (torch_dtype)")
        return self


def _token_text(value: str) -> str:
    if not value:
        raise ValueError("must be a non-empty string (the token's text)")
    return value


TokenText = Annotated[str, AfterValidator(_token_text)]


class SpecialTokens(StrictModel):
    """Special tokens set on the tokenizer (axolotl's `special_tokens`); one it lacks is added to its vocabulary."""

    pad_token: TokenText | None = Field(
        None,
        description=(
            "The pad token. Takes precedence over data_conf.missing_pad_token_strategy, which then does nothing "
            "(unk-convert-to-eos with a pad token of your own is refused)."
        ),
    )
    eos_token: TokenText | None = Field(
        None,
        description=(
            "The end-of-sequence token: training text ends with it where the tokenizer appends eos, and templates "
            "that end assistant turns with eos use it (a template with its own end marker still saves that one as "
            "the inference eos)."
        ),
    )
    bos_token: TokenText | None = Field(None, description="The beginning-of-sequence token.")
    unk_token: TokenText | None = Field(None, description="The unknown token.")

    def as_dict(self) -> dict[str, str]:
        return {name: value for name, value in self.model_dump().items() if value is not None}


def _unquoted_no(value: Any) -> Any:
    # YAML 1.1 reads an unquoted `determinism: no` as false; the user meant the level "no".
    return "no" if value is False else value


Determinism = Annotated[Literal["no", "half", "full"], BeforeValidator(_unquoted_no)]


class RunConfig(StrictModel):
    """Experiment running configuration."""

    model: str = Field(
        "/local_resources/basemodel",
        description="Local path to model to be fine-tuned. Normally this should be `/local_resources/basemodel`",
    )
    model_args: ModelArguments = Field(default=ModelArguments(), description="Arguments passed to from_pretrained.")
    tokenizer: str | None = Field(
        None, description="Model HuggingFace ID, or path, or None to use the one associated with the model"
    )
    special_tokens: SpecialTokens = Field(
        default=SpecialTokens(),
        description=(
            "pad_token / eos_token / bos_token / unk_token to set on the tokenizer, added to the vocabulary when it "
            "lacks them (the embeddings grow to fit: a LoRA run then also trains and saves them, and saves the "
            "resized base; a quantized model cannot grow)."
        ),
    )
    added_tokens: list[TokenText] = Field(
        default=[],
        description=(
            "Extra tokens added to the tokenizer as regular (not special) tokens, each kept whole in text: e.g. "
            "['<think>', '</think>']. Tokens it already has are left as they are; the embeddings grow for new ones."
        ),
    )
    config_overrides: dict[str, Any] = Field(
        default={},
        description=(
            "Model config attributes replaced before the model loads, e.g. {rope_scaling: {type: linear, factor: "
            "2.0}} (axolotl's overrides_of_model_config). Each key must be an attribute of the model's config. "
            "rope_scaling / rope_parameters given as a mapping are merged into the config's rope parameters (rope "
            "theta kept; `type` read as rope_type). A full fine-tune saves the changed config; an adapter's base "
            "must be loaded with the same overrides to match."
        ),
    )
    use_fast_tokenizer: bool = Field(
        True,
        description="Use the Fast version of the tokenizer. The 'slow' version may be compatible with more features.",
    )
    resume_from_checkpoint: bool | str = Field(
        False,
        description=(
            "Normally should be set to 'auto' to continue if a checkpoint exists. Can set to `True` to always try "
            "to continue, `False` to never try, or a path to load from a specific path."
        ),
    )
    final_checkpoint_name: DirectoryName = Field(
        "checkpoint-final", description="Name of final checkpoint. Should be left as default"
    )
    determinism: Determinism = Field(
        "no",
        description=(
            "Reproducibility beyond the seed. no: seeded only (fastest). half: prefer deterministic implementations "
            "(torch deterministic algorithms with warnings only, cuDNN deterministic, no cuDNN benchmark). full: "
            "only deterministic implementations; an operation without one fails the run (also sets "
            "CUBLAS_WORKSPACE_CONFIG and the other variables of transformers' full determinism)."
        ),
    )

    @field_validator("added_tokens")
    @classmethod
    def _distinct(cls, tokens: list[str]) -> list[str]:
        repeated = sorted({token for token in tokens if tokens.count(token) > 1})
        if repeated:
            raise ValueError(f"lists {repeated} more than once")
        return tokens
