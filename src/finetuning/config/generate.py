"""Config of the `generate` tool: which model (with the training-time loading options), which prompts, how to generate.

```yaml
model_conf:
  model: demo_output/checkpoints/checkpoint-final   # path or hub id
  model_args: {torch_dtype: auto}                    # as run_conf.model_args
  adapter: null                                      # optional PEFT adapter directory
  tokenizer: null                                    # default: the adapter dir if it has a tokenizer, else the model
prompt_conf:
  type: eval-data                                    # or: {type: open-input, input: "...", num_samples: 3}
  data: {path: examples/data/facts.jsonl}
hf_gen_params: {max_new_tokens: 64}                  # transformers.GenerationConfig options
batch_size: 8
quant_conf: {quantization_type: no-quantization}
```
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Discriminator, Field, Tag, ValidationError

from finetuning.config._base import Int, StrictModel
from finetuning.config.loading import ConfigError, format_validation_error, read_yaml
from finetuning.config.quant import NoQuantizationConfig, QuantizationConfig
from finetuning.config.run import ModelArguments
from finetuning.errors import did_you_mean

# GenerationConfig options that would break the one-answer-per-prompt output, or that are not options at all.
_GEN_PARAMS_REFUSED = {
    "num_return_sequences": "one answer per prompt; use prompt_conf.num_samples (open-input) for several",
    "return_dict_in_generate": "the tool needs plain token ids back",
    "transformers_version": "not a generation option",
}


class ModelConf(StrictModel):
    """The model to generate with, loaded with the same options as in training."""

    model: str = Field(
        description="Local path or Hugging Face hub id of the full model (e.g. the `checkpoint-final` of a full "
        "fine-tune). A PEFT adapter goes in `adapter`, its base model here."
    )
    model_args: ModelArguments = Field(
        default=ModelArguments(), description="Arguments passed to from_pretrained, as `run_conf.model_args`."
    )
    adapter: str | None = Field(
        None, description="Optional PEFT adapter directory, loaded on the model with `PeftModel.from_pretrained`."
    )
    tokenizer: str | None = Field(
        None,
        description="Tokenizer path or hub id. Default: the adapter directory if it holds a tokenizer, else the model.",
    )


class OpenInputPrompts(StrictModel):
    """One prompt string, used as a single user message, asked `num_samples` times."""

    type: Literal["open-input"] = Field(description="Selects a single typed-in prompt.")
    input: str = Field(description="The prompt, sent as one user message.")
    num_samples: Int = Field(1, ge=1, description="How many answers to generate for the prompt.")


class EvalDataSource(StrictModel):
    """A JSONL data file of prompts."""

    path: str = Field(description="JSONL file; relative paths resolve against the working directory.")


class EvalDataPrompts(StrictModel):
    """Prompts from a JSONL file.

    Rows are `{"prompt_messages": [...], "correct_answers": [...], "dataset": ..., "id": ...}` (only
    `prompt_messages` required), or SFT rows `{"messages": [...]}` whose final assistant message is the single
    correct answer and everything before it the prompt.
    """

    type: Literal["eval-data"] = Field(description="Selects prompts from a data file.")
    data: EvalDataSource = Field(description="The data file.")


PromptConf = Annotated[
    Annotated[OpenInputPrompts, Tag("open-input")] | Annotated[EvalDataPrompts, Tag("eval-data")],
    Discriminator(
        lambda value: value.get("type") if isinstance(value, dict) else getattr(value, "type", None),
        custom_error_type="prompt_type",
        custom_error_message="type must be 'open-input' or 'eval-data'",
    ),
]


class GenerateConfig(StrictModel):
    """The `generate` tool's config."""

    model_conf: ModelConf = Field(description="Model, loading options, adapter and tokenizer.")
    prompt_conf: PromptConf = Field(description="The prompts: `open-input` or `eval-data`.")
    chat_template_name: str | None = Field(
        None,
        description=(
            "Chat template that renders the prompts. Default: keep the tokenizer's own (after `finetuning sft`, the "
            "training template). A name installs that template as in training (see data_conf.chat_template_name)."
        ),
    )
    hf_gen_params: dict[str, Any] = Field(
        default_factory=dict,
        description=(
            "Options of transformers.GenerationConfig passed to `model.generate`. Defaults: do_sample false (greedy), "
            "max_length 2048, max_new_tokens 512, eos_token_id = [tokenizer eos, model eos ids, '</s>' if known]. "
            "Prompts are truncated from the left to max_length - max_new_tokens tokens."
        ),
    )
    batch_size: Int = Field(8, ge=1, description="Prompts per generate() call (left-padded).")
    seed: Int = Field(42, description="Random seed (matters only with do_sample: true).")
    quant_conf: QuantizationConfig = Field(
        default=NoQuantizationConfig(), description="Quantization of the model weights, as in training."
    )


def generation_param_names() -> set[str]:
    from transformers import GenerationConfig

    return {key for key in GenerationConfig().to_dict() if not key.startswith("_")}


def gen_params_problems(params: Any) -> list[str]:
    """Unknown or refused `hf_gen_params` keys (with a did-you-mean), and values GenerationConfig rejects."""
    if not isinstance(params, dict):
        return []  # pydantic reports the type
    valid = generation_param_names() - set(_GEN_PARAMS_REFUSED)
    problems = []
    for key in params:
        if key in _GEN_PARAMS_REFUSED:
            problems.append(f"hf_gen_params.{key}: not allowed here ({_GEN_PARAMS_REFUSED[key]})")
        elif key not in valid:
            problems.append(f"hf_gen_params.{key}: unknown key" + did_you_mean(str(key), sorted(valid)))
    if problems:
        return problems
    from transformers import GenerationConfig

    try:
        GenerationConfig(**params).validate()
    except (ValueError, TypeError) as error:
        problems.append(f"hf_gen_params: {error}")
    return problems


def template_name_problem(name: Any) -> str | None:
    from finetuning.data.templates import TEMPLATES

    if name is None or name in TEMPLATES:
        return None
    hint = did_you_mean(str(name), TEMPLATES) or f"; expected one of {', '.join(TEMPLATES)}"
    return f"chat_template_name: unknown chat template {name!r}{hint}"


def validate_generate_config(data: dict[str, Any], source: str | None = None) -> GenerateConfig:
    """Validate a parsed generate config; every problem at once, as `dotted.path: message` (a `ConfigError`)."""
    problems: list[str] = []
    config = None
    try:
        config = GenerateConfig.model_validate(data)
    except ValidationError as exc:
        problems.extend(format_validation_error(exc, GenerateConfig, data))
    problems.extend(gen_params_problems(data.get("hf_gen_params")))
    if (problem := template_name_problem(data.get("chat_template_name"))) is not None:
        problems.append(problem)
    if problems or config is None:
        raise ConfigError(problems, source)
    return config


def load_generate_config(path: str) -> GenerateConfig:
    return validate_generate_config(read_yaml(path), source=path)
