"""Adapter section (`peft_conf`).

`peft` imports torch, and nothing in `config/` may import torch at import time. So the accepted adapter types are a
list taken from the schema (seed 000), and a name outside that list is checked against the installed `peft` only
when it occurs.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Discriminator, Field, Tag, field_validator, model_validator
from pydantic_core import PydanticCustomError

from finetuning.config._base import StrictModel, is_number
from finetuning.config.dataclass_check import check_dataclass_kwargs
from finetuning.errors import did_you_mean

# The PeftType values documented by the schema. Newer `peft` releases add more; those are accepted too (checked
# lazily against the installed `peft.PeftType`).
KNOWN_PEFT_TYPES: tuple[str, ...] = (
    "PROMPT_TUNING",
    "MULTITASK_PROMPT_TUNING",
    "P_TUNING",
    "PREFIX_TUNING",
    "LORA",
    "ADALORA",
    "BOFT",
    "ADAPTION_PROMPT",
    "IA3",
    "LOHA",
    "LOKR",
    "OFT",
    "POLY",
    "LN_TUNING",
    "VERA",
    "FOURIERFT",
    "XLORA",
    "HRA",
    "VBLORA",
)

TaskType = Literal["SEQ_CLS", "SEQ_2_SEQ_LM", "CAUSAL_LM", "TOKEN_CLS", "QUESTION_ANS", "FEATURE_EXTRACTION"]


def installed_peft_types() -> list[str]:
    """The adapter types the installed `peft` knows (imports peft, hence torch)."""
    import peft

    return [p.value for p in peft.PeftType]


class NoPeftConfig(StrictModel):
    """A trivial config specifying that no peft is used: all model weights are trained."""

    peft_type: Literal["NO_PEFT"] = Field(description="Selects full fine-tuning without an adapter.")


class PretrainedPeftConfig(StrictModel):
    """PEFT adapter uses the config and initialisation from a pretrained adapter."""

    peft_type: Literal["PRETRAINED_PEFT"] = Field(description="Selects loading an existing adapter.")
    name_or_path: str = Field(description="HF ID or path to the pretrained peft")


class GenericPeftConfig(StrictModel):
    """Config for any newly initialised PEFT adapter.

    See https://huggingface.co/docs/peft/tutorial/peft_model_config for the possible `peft_kwargs`.
    """

    peft_type: str = Field(
        json_schema_extra={"enum": list(KNOWN_PEFT_TYPES)},
        description="The PEFT adapter type, e.g. LORA. Any `peft.PeftType` of the installed peft is accepted.",
    )
    task_type: TaskType = Field("CAUSAL_LM", description="The PEFT task type; CAUSAL_LM for language models.")
    peft_kwargs: dict[str, Any] = Field(
        default_factory=dict, description="Keyword arguments for the adapter's peft config class, e.g. r, lora_alpha."
    )

    @field_validator("peft_type")
    @classmethod
    def _known_peft_type(cls, value: str) -> str:
        if value in KNOWN_PEFT_TYPES:
            return value
        try:
            installed = installed_peft_types()
        except ImportError:
            installed = []
        if value in installed:
            return value
        choices = sorted(set(KNOWN_PEFT_TYPES) | set(installed)) + ["NO_PEFT", "PRETRAINED_PEFT"]
        hint = did_you_mean(value, choices) or f"; expected one of {', '.join(choices)}"
        raise ValueError(f"unknown peft_type '{value}'{hint}")

    @model_validator(mode="after")
    def _check_peft_kwargs(self) -> GenericPeftConfig:
        """Check `peft_kwargs` against the installed peft's config class, before any model loads."""
        try:
            import peft
        except ImportError:
            return self
        config_class = peft.PEFT_TYPE_TO_CONFIG_MAPPING.get(self.peft_type)
        if config_class is None:
            return self
        problems = check_dataclass_kwargs(self.peft_kwargs, config_class, "peft_conf.peft_kwargs")
        problems = [
            p
            for p in problems
            if not p.startswith(("peft_conf.peft_kwargs.peft_type", "peft_conf.peft_kwargs.task_type"))
        ]
        if not problems:
            problems = self._rank_problems() + self._config_class_problems()
        if problems:
            raise PydanticCustomError(
                "training_args", "{summary}", {"summary": "; ".join(problems), "problems": problems}
            )
        return self

    def _rank_problems(self) -> list[str]:
        """The adapter rank `r` (LoRA and its relatives) is checked by peft only while wrapping the loaded model."""
        rank = self.peft_kwargs.get("r")
        if is_number(rank) and isinstance(rank, int) and rank < 1:
            return [f"peft_conf.peft_kwargs.r: must be greater than or equal to 1, got {rank}"]
        return []

    def _config_class_problems(self) -> list[str]:
        """What the peft config class itself refuses (e.g. LoRA `r: 0`), found now instead of after the model loads."""
        try:
            self.get_peft_config()
        except (TypeError, ValueError) as error:
            return [f"peft_conf.peft_kwargs: {error}"]
        return []

    def get_peft_config(self) -> Any:
        """Build the `peft` config object (imports peft)."""
        import peft

        return peft.get_peft_config({"peft_type": self.peft_type, "task_type": self.task_type, **self.peft_kwargs})


def _peft_tag(value: Any) -> str | None:
    # A callable discriminator: NO_PEFT and PRETRAINED_PEFT select their own models, every other
    # peft_type selects the generic adapter config, so an error names the right variant's fields.
    if isinstance(value, StrictModel):
        return type(value).__name__
    if not isinstance(value, dict) or "peft_type" not in value:
        return None
    kind = value["peft_type"]
    if kind == "NO_PEFT":
        return "NoPeftConfig"
    if kind == "PRETRAINED_PEFT":
        return "PretrainedPeftConfig"
    return "GenericPeftConfig"


PeftConfig = Annotated[
    Annotated[NoPeftConfig, Tag("NoPeftConfig")]
    | Annotated[PretrainedPeftConfig, Tag("PretrainedPeftConfig")]
    | Annotated[GenericPeftConfig, Tag("GenericPeftConfig")],
    Discriminator(
        _peft_tag,
        custom_error_type="peft_type",
        custom_error_message="peft_type is required: NO_PEFT, PRETRAINED_PEFT or an adapter type such as LORA",
    ),
]
