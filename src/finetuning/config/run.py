"""Model and run section (`run_conf`)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, ConfigDict, Field, model_validator

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
