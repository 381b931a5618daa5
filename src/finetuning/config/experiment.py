"""The top-level experiment config: one field per section.

`training_args` is a plain dict validated against the installed trainer arguments class (see `training_args.py`).
Legacy-key translations are not errors; they are collected in `.notices` for the CLI to log, and a legacy
`training_args.logging_dir` is kept out of the dict and exposed as `.logging_dir`.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, PrivateAttr, field_validator, model_validator
from pydantic_core import PydanticCustomError

from finetuning.config._base import StrictModel, is_number
from finetuning.config.batchsize import BatchsizeConfig
from finetuning.config.data import ChatTrainValidConfig
from finetuning.config.data_rows import format_method_problems
from finetuning.config.evaluation import EvalConfig
from finetuning.config.overrides import Overrides
from finetuning.config.peft import NoPeftConfig, PeftConfig
from finetuning.config.quant import BnBQuantizationConfig, NoQuantizationConfig, QuantizationConfig
from finetuning.config.run import RunConfig
from finetuning.config.sft import SFTArguments, packing_attention_problem
from finetuning.config.spectrum import SpectrumConfig, spectrum_problem
from finetuning.config.stopping import StoppingConfig, stopping_problems
from finetuning.config.tracking import FinetuningTrackingConfig, WandbConfig
from finetuning.config.trainer_fields import FieldTable, trainer_fields
from finetuning.config.training_args import TrainingArgsError, default_logging_dir, process_training_args


class _CheckedTrainingArgs(dict):
    """The translated training args, carrying the translation's side results to the model validator."""

    notices: list[str]
    logging_dir: str | None
    overwrite_output_dir: bool


class ExperimentConfigBase(StrictModel):
    """Sections shared by every method. The trainer arguments class is the method's (`trainer_fields.TRAINER_CLASSES`)."""

    method: str = Field(description="The fine-tuning method.")
    data_conf: ChatTrainValidConfig = Field(description="The data input config")
    training_args: dict[str, Any] = Field(
        description=(
            "Transformer TrainingArguments with some restrictions: the batch size keys come from batchsize_conf, "
            "output_dir defaults to $CHECKPOINTS_PATH or ./checkpoints, and legacy keys are translated."
        )
    )
    overrides: Overrides = Field(default=Overrides(), description="Override options to simplify the config interface")
    batchsize_conf: BatchsizeConfig = Field(description="Batch size configuration")
    peft_conf: PeftConfig = Field(description="Adapter configuration")
    run_conf: RunConfig = Field(description="Model related configuration")
    tracking: FinetuningTrackingConfig | None = Field(None, description="MLFlow tracking configuration")
    wandb: WandbConfig | None = Field(None, description="Weights & Biases logging (optional)")
    quant_conf: QuantizationConfig = Field(default=NoQuantizationConfig(), description="Quantization configuration")
    stopping: StoppingConfig = Field(
        default=StoppingConfig(), description="Ending a run early: the loss watchdog, early stopping on eval_loss"
    )
    eval_conf: EvalConfig | None = Field(
        None,
        description=(
            "Benchmarks run on the final model after the final save (lm_eval tasks, exact match over a dataset, "
            "HumanEval); results in output_dir/eval_results.json. A failing benchmark is reported, never fails the run."
        ),
    )
    spectrum: SpectrumConfig | None = Field(
        None,
        description="Spectrum: train only the weight matrices with the highest signal-to-noise ratio (needs NO_PEFT)",
    )

    _notices: list[str] = PrivateAttr(default_factory=list)
    _logging_dir: str | None = PrivateAttr(default=None)
    _overwrite_output_dir: bool = PrivateAttr(default=False)
    _cli_overrides: list[str] = PrivateAttr(default_factory=list)  # `path=value` of the command line (dotted.py)

    @classmethod
    def _trainer_fields(cls) -> FieldTable:
        """The fields of the method's trainer arguments class (from the on-disk table: no torch import)."""
        return trainer_fields(cls.model_fields["method"].default)

    @field_validator("training_args")
    @classmethod
    def _check_training_args(cls, value: dict[str, Any]) -> dict[str, Any]:
        try:
            result = process_training_args(value, cls._trainer_fields())
        except TrainingArgsError as exc:
            # One pydantic error carrying all problems; the loader expands `problems` into separate lines.
            raise PydanticCustomError(
                "training_args", "{summary}", {"summary": str(exc), "problems": exc.problems}
            ) from None
        checked = _CheckedTrainingArgs(result.args)
        checked.notices = result.notices
        checked.logging_dir = result.logging_dir
        checked.overwrite_output_dir = result.overwrite_output_dir
        return checked

    @model_validator(mode="after")
    def _cross_section_checks(self) -> ExperimentConfigBase:
        if isinstance(self.training_args, _CheckedTrainingArgs):
            self._notices = list(self.training_args.notices)
            self._logging_dir = self.training_args.logging_dir
            self._overwrite_output_dir = self.training_args.overwrite_output_dir
            self.training_args = dict(self.training_args)
        quantized = isinstance(self.quant_conf, BnBQuantizationConfig)
        if (problem := spectrum_problem(self.spectrum, self.peft_conf.peft_type, quantized)) is not None:
            raise ValueError(problem)
        if isinstance(self.quant_conf, BnBQuantizationConfig) and isinstance(self.peft_conf, NoPeftConfig):
            raise ValueError(
                "quant_conf: a quantized model cannot be fully fine-tuned (peft_type NO_PEFT); "
                "use an adapter such as LORA or drop quant_conf"
            )
        if (problem := self._training_length_problem()) is not None:
            raise ValueError(problem)
        self._check_stopping_and_tokens()
        if self.data_conf.validation_data.type == "NONE":
            wants_eval = [
                f"{key}: {self.training_args[key]!r}"
                for key in ("eval_strategy", "load_best_model_at_end", "do_eval")
                if self.training_args.get(key) not in (None, False, "no")
            ]
            if wants_eval:
                raise ValueError(
                    f"training_args.{wants_eval[0]} needs validation data, but data_conf.validation_data.type is NONE; "
                    "use AUTO_SPLIT or CONCATENATION, or drop the evaluation options"
                )
        return self

    def _check_stopping_and_tokens(self) -> None:
        """Early stopping needs evaluations and ranks them by eval_loss unless told otherwise; a pad token set in
        run_conf.special_tokens replaces data_conf.missing_pad_token_strategy, so one that needs no pad conflicts."""
        if problems := stopping_problems(self.stopping, self.training_args):
            raise ValueError(problems[0])
        if self.stopping.early_stopping_patience is not None:
            self.training_args.setdefault("metric_for_best_model", "eval_loss")
        strategy = self.data_conf.missing_pad_token_strategy
        if self.run_conf.special_tokens.pad_token is not None and strategy == "unk-convert-to-eos":
            raise ValueError(
                "run_conf.special_tokens.pad_token: data_conf.missing_pad_token_strategy unk-convert-to-eos pads with "
                "the unk token; a pad token of your own replaces the strategy, so drop one of the two"
            )

    def _training_length_problem(self) -> str | None:
        """No steps and no epochs would run zero steps and still save a "trained" model."""
        epochs = self.overrides.num_train_epochs or self.training_args.get("num_train_epochs")
        max_steps = self.training_args.get("max_steps")
        if is_number(epochs) and epochs <= 0 and not (is_number(max_steps) and max_steps > 0):
            return (
                f"training_args.num_train_epochs: must be greater than 0 (or set max_steps), got {epochs}; "
                "this would train for zero steps"
            )
        return None

    @property
    def notices(self) -> list[str]:
        """One line per legacy key that was translated or dropped; meant to be logged once."""
        return self._notices

    @property
    def logging_dir(self) -> str:
        """TensorBoard log directory: `training_args.logging_dir` (legacy) or `$LOGS_PATH` or `./logs`."""
        return self._logging_dir or self.training_args.get("logging_dir") or default_logging_dir()

    def engine_training_args(self) -> dict[str, Any]:
        """`training_args` keys the engine consumes itself (not passed to the trainer); written back on dumps."""
        return {"overwrite_output_dir": True} if self._overwrite_output_dir else {}

    @property
    def overwrite_output_dir(self) -> bool:
        """`training_args.overwrite_output_dir: true`: a fresh start may replace an earlier run's outputs."""
        return self._overwrite_output_dir

    @property
    def legacy_logging_dir(self) -> str | None:
        """The `training_args.logging_dir` the user gave, if the installed library no longer has that option."""
        return self._logging_dir


class SFTExperimentConfig(ExperimentConfigBase):
    """Supervised fine-tuning experiment config (`finetuning sft CONFIG`)."""

    method: Literal["sft"] = Field("sft", description="The fine-tuning method; always sft here.")
    sft_args: SFTArguments = Field(description="SFT specific arguments")

    @model_validator(mode="after")
    def _packing_attention(self) -> SFTExperimentConfig:
        """Packed documents must not attend to each other: the attention implementation has to keep them apart."""
        attention = self.run_conf.model_args.attn_implementation
        parallelism = self.training_args.get("parallelism_config")
        if (problem := packing_attention_problem(self.sft_args.packing, attention, parallelism)) is not None:
            raise ValueError(problem)
        if problems := format_method_problems(self.data_conf, "sft"):  # preference formats are no SFT data
            raise ValueError(problems[0])
        return self


# Silogen's DPO defaults (TRL's are 1024 / none): long prompts are common in preference data.
DPO_DEFAULT_MAX_LENGTH = 2048
DPO_DEFAULT_MAX_PROMPT_LENGTH = 1536


class PreferenceExperimentConfigBase(ExperimentConfigBase):
    """DPO-family configs: the SFT shape without `sft_args`; method options live in `training_args`.

    Silogen DPO configs were written for TRL 0.13; three of their keys no longer exist in TRL 1.16 and keep their
    meaning here: `max_prompt_length` (prompts truncated to it, keeping their end, during data preparation),
    `rpo_alpha` (now the "sft" loss added with that weight) and `reference_free` (reference log-probs are zero).
    """

    _max_prompt_length: int | None = PrivateAttr(default=DPO_DEFAULT_MAX_PROMPT_LENGTH)
    _reference_free: bool = PrivateAttr(default=False)

    @model_validator(mode="wrap")
    @classmethod
    def _take_legacy_keys(cls, data: Any, handler):
        engine: dict[str, Any] = {"max_prompt_length": DPO_DEFAULT_MAX_PROMPT_LENGTH, "reference_free": False}
        notices: list[str] = []
        if isinstance(data, dict) and isinstance(data.get("training_args"), dict):
            training_args = dict(data["training_args"])
            for key in engine:
                if key in training_args and not cls._trainer_has_field(key):
                    engine[key] = training_args.pop(key)
            if not (engine["max_prompt_length"] is None or _positive_int(engine["max_prompt_length"])):
                raise PydanticCustomError(
                    "max_prompt_length", "training_args.max_prompt_length: must be a positive integer or null"
                )
            if not isinstance(engine["reference_free"], bool):
                raise PydanticCustomError("reference_free", "training_args.reference_free: must be true or false")
            if engine["reference_free"]:
                notices.append("training_args.reference_free: true → reference log-probs are taken as 0 (no reference)")
            if "rpo_alpha" in training_args and not cls._trainer_has_field("rpo_alpha"):
                alpha = training_args.pop("rpo_alpha")
                if alpha is not None:
                    losses = training_args.get("loss_type", ["sigmoid"])
                    losses = [losses] if isinstance(losses, str) else list(losses)
                    weights = training_args.get("loss_weights") or [1.0] * len(losses)
                    training_args["loss_type"], training_args["loss_weights"] = (
                        losses + ["sft"],
                        list(weights) + [alpha],
                    )
                    notices.append(
                        f"training_args.rpo_alpha: {alpha} translated to loss_type {training_args['loss_type']} "
                        f"with loss_weights {training_args['loss_weights']} (RPO = DPO + weighted NLL on chosen)"
                    )
            training_args.setdefault("max_length", DPO_DEFAULT_MAX_LENGTH)
            data = {**data, "training_args": training_args}
        config = handler(data)
        config._max_prompt_length = engine["max_prompt_length"]
        config._reference_free = engine["reference_free"]
        config._notices.extend(notices)
        return config

    @model_validator(mode="after")
    def _rows_have_their_own_shape(self) -> PreferenceExperimentConfigBase:
        # `format` converts rows to the method's own shape (data/formats.py): SFT formats are no preference data
        if problems := format_method_problems(self.data_conf, self.method):
            raise ValueError(problems[0])
        return self

    @classmethod
    def _trainer_has_field(cls, name: str) -> bool:
        return cls._trainer_fields().has_field(name)

    @property
    def max_prompt_length(self) -> int | None:
        """Prompts longer than this many tokens keep only their last `max_prompt_length` tokens (None: no limit)."""
        return self._max_prompt_length

    def engine_training_args(self) -> dict[str, Any]:
        return {
            **super().engine_training_args(),
            "max_prompt_length": self._max_prompt_length,
            "reference_free": self._reference_free,
        }

    @property
    def reference_free(self) -> bool:
        """Reference-free DPO: the implicit reward is the policy log-prob itself (reference log-probs = 0)."""
        return self._reference_free


def _positive_int(value: Any) -> bool:
    return is_number(value) and isinstance(value, int) and value >= 1


class DPOExperimentConfig(PreferenceExperimentConfigBase):
    """Preference optimisation with paired data (`finetuning dpo CONFIG`): DPO and every TRL DPO loss type."""

    method: Literal["dpo"] = Field("dpo", description="dpo: paired preference optimisation (DPO, IPO, hinge, ...).")


class KTOExperimentConfig(PreferenceExperimentConfigBase):
    """KTO (`finetuning dpo CONFIG` with `method: kto`): paired rows give one desirable and one undesirable example,
    unpaired rows carry a boolean `label`; `desirable_weight` / `undesirable_weight` live in `training_args`."""

    method: Literal["kto"] = Field("kto", description="kto: Kahneman-Tversky optimisation from (un)paired data.")
