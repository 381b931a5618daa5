"""Data input section (`data_conf`).

Only the *shape* of the data configuration is checked here. Whether the files exist and hold valid rows is the
data layer's job (it reports `file:line` errors), so a config can be validated on a machine without the data.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator

from finetuning.config._base import Float, Int, StrictModel
from finetuning.config.data_rows import DatasetSource

DATA_TYPE_DESCRIPTION = "generally, the data_type is automatically set based on the experiment config method"

ChatTemplateName = Literal["mistral-with-system", "chat-ml", "poro", "keep-original", "simplified-llama31"]
MissingPadTokenStrategy = Literal["eos-repurpose", "bos-repurpose", "unk-repurpose", "unk-convert-to-eos"]


class DatasetDefinition(DatasetSource):
    """Define how to load a dataset."""


class WeightedDatasetDefinition(DatasetSource):
    """Define a dataset, with a weight for sampling."""

    sampling_weight: Float = Field(
        1.0, ge=0, description="Relative sampling weight; 0 skips the dataset. Negative weights are not allowed."
    )


class ConcatenationDataInput(StrictModel):
    """A simple list of datasets, concatenated in the listed order (the same as sampling all with equal weight).

    For SFT the JSONL lines are `{"messages": [{"content": ..., "role": ...}, ...]}`; for DPO
    `{"prompt_messages": [...], "chosen_messages": [...], "rejected_messages": [...]}`.
    """

    type: Literal["CONCATENATION"] = Field(description="Selects this data input kind.")
    datasets: list[DatasetDefinition] = Field(min_length=1, description="The datasets to concatenate, in order.")
    data_type: str = Field("ChatConversation", description=DATA_TYPE_DESCRIPTION)


class WeightedMixDataInput(StrictModel):
    """A list of datasets where each is sampled by a certain weight.

    The datasets are interleaved by their sampling weights until every sample of every dataset has been drawn,
    so small weights can make the resulting dataset very large.
    """

    type: Literal["PRECOMPUTE_WEIGHTED_MIX"] = Field(description="Selects this data input kind.")
    datasets: list[WeightedDatasetDefinition] = Field(min_length=1, description="The datasets to mix.")
    data_type: str = Field("ChatConversation", description=DATA_TYPE_DESCRIPTION)
    seed: Int = Field(19851243, description="Seed for the random number generator for interleaving draws")

    @model_validator(mode="after")
    def _some_weight_positive(self) -> WeightedMixDataInput:
        # All-zero weights leave nothing to sample from; catch it here rather than deep inside the mixer.
        if all(d.sampling_weight == 0 for d in self.datasets):
            raise ValueError("all sampling weights are zero; at least one dataset needs a weight > 0")
        return self


class AutoSplitDataInput(StrictModel):
    """Automatic validation split from the training data."""

    type: Literal["AUTO_SPLIT"] = Field(description="Selects this data input kind.")
    data_type: str = Field("ChatConversation", description=DATA_TYPE_DESCRIPTION)
    ratio: Float = Field(0.2, gt=0, lt=1, description="Ratio of the training data to use for validation")
    seed: Int = Field(1289525893, description="Seed for the random number generator for splitting")


class NoneDataInput(StrictModel):
    """A special type for not using data, e.g. no validation set."""

    type: Literal["NONE"] = Field(description="Selects this data input kind.")
    data_type: str = Field("ChatConversation", description=DATA_TYPE_DESCRIPTION)


TrainingDataInput = Annotated[ConcatenationDataInput | WeightedMixDataInput, Field(discriminator="type")]
ValidationDataInput = Annotated[
    AutoSplitDataInput | ConcatenationDataInput | NoneDataInput, Field(discriminator="type")
]


class Preprocess(StrictModel):
    """VectorLM's `dataset_preprocess`, as its code behaves: raw text rows → tokenized rows written to `save_path`
    with `datasets.save_to_disk` (columns input_ids, labels, attention_mask, id), which a `format: tokenized` dataset
    entry then trains on. The chunk and truncation length is `sft_args.max_seq_length` (VectorLM's max_seq_len).
    `finetuning preprocess CONFIG` runs it; `finetuning sft` runs it first when a tokenized entry's path is
    `save_path` and that does not exist yet."""

    load_path: str = Field(
        description=(
            "The raw dataset: a directory written by datasets.save_to_disk (from_disk: true), else a Hugging Face "
            "Hub dataset id (or a path datasets.load_dataset reads)"
        )
    )
    split: str | None = Field(
        None, description="The split to read when load_path holds several (a saved DatasetDict, most Hub datasets)"
    )
    from_disk: bool = Field(True, description="true: load_path is a save_to_disk directory; false: load_dataset(it)")
    data_field: str = Field("text", description="The column holding each row's text")
    pre_pend: str | None = Field(None, description="Text put before every row's text (after bos), e.g. a prompt")
    add_bos_eos_tokens: bool = Field(
        True,
        description=(
            "Add the tokenizer's bos and eos tokens: around each row's text, or with packing around every chunk "
            "(bos and eos trained there too). The tokenizer must have both."
        ),
    )
    separator: str | None = Field(
        None,
        min_length=1,
        description=(
            "Conditional fine-tuning: everything up to and including the first occurrence of this string is not "
            "trained (labels -100), the rest is; rows without it are dropped, and counted. VectorLM's spelling "
            "`seperator` is accepted too."
        ),
    )
    packing_type: Literal["full", "partial"] | None = Field(
        None,
        description=(
            "full: the rows of each 2,000-row batch are joined (no separator token, no attention separation) and cut "
            "into chunks; partial: each row is cut into chunks alone. Chunks are max_seq_length tokens, bos and eos "
            "included. null: one row per example."
        ),
    )
    overlap: Int = Field(0, ge=0, description="With packing_type: tokens consecutive chunks share (trained in both).")
    truncate: bool = Field(
        False, description="Cut rows longer than max_seq_length to max_seq_length - 1 tokens + eos (not with packing)"
    )
    ignore_index: Int = Field(-100, description="The label of tokens not trained; only -100 (the loss ignores it)")
    dataset_format: Literal["hf"] = Field("hf", description="VectorLM's forward-compatibility key; only hf")
    save_path: str = Field(description="Where the tokenized dataset is written (save_to_disk; replaced atomically)")

    @model_validator(mode="before")
    @classmethod
    def _vectorlm_spelling(cls, data):
        """VectorLM's code and configs spell the key `seperator`."""
        if isinstance(data, dict) and "seperator" in data:
            if "separator" in data:
                raise ValueError("both separator and seperator (VectorLM's spelling) are given; keep one")
            data = {("separator" if key == "seperator" else key): value for key, value in data.items()}
        return data

    @model_validator(mode="after")
    def _consistent(self) -> Preprocess:
        # VectorLM raises on truncate + packing_type too: packing already fits every chunk into max_seq_len.
        if self.truncate and self.packing_type is not None:
            raise ValueError(
                f"truncate: true and packing_type: {self.packing_type} cannot both be set (packing already cuts "
                "every chunk to max_seq_length); drop one"
            )
        if self.overlap and self.packing_type is None:
            raise ValueError(f"overlap: {self.overlap} applies to packing only; set packing_type or drop overlap")
        if self.ignore_index != -100:
            raise ValueError(
                f"ignore_index: {self.ignore_index}: only -100 is supported, the value the training loss ignores "
                "(VectorLM's preprocessing writes -100 whatever this says)"
            )
        return self


class ChatTrainValidConfig(StrictModel):
    """Training time data configuration.

    Always defines a data input for training and one for validation (a trivial `NONE` input is allowed there).
    Also holds the chat template and padding settings, as those are part of the data input pipeline.
    """

    training_data: TrainingDataInput = Field(description="Training data: CONCATENATION or PRECOMPUTE_WEIGHTED_MIX.")
    validation_data: ValidationDataInput = Field(description="Validation data: AUTO_SPLIT, CONCATENATION or NONE.")
    chat_template_name: ChatTemplateName = Field(
        "mistral-with-system", description="Chat template used to turn conversations into text."
    )
    padding_side: Literal["right", "left"] = Field("right", description="Padding side, right is usually right.")
    missing_pad_token_strategy: MissingPadTokenStrategy = Field(
        "bos-repurpose",
        description=(
            "What to use as the pad token when the tokenizer has none: eos-repurpose, bos-repurpose (default), "
            "unk-repurpose, or unk-convert-to-eos (pad with UNK, turned into EOS on the input side by the collator)."
        ),
    )
    prepared_path: str | None = Field(
        None,
        description=(
            "Where tokenized data is cached (default: $FINETUNING_CACHE/data, else ~/.cache/finetuning/data); a run "
            "of the same data, tokenizer and settings reuses it. axolotl's dataset_prepared_path maps to it "
            "(VectorLM's save_path is data_conf.preprocess.save_path)."
        ),
    )
    preprocess: Preprocess | None = Field(
        None,
        description=(
            "VectorLM's dataset preprocessing: tokenize a raw text dataset into save_path, which a dataset entry "
            "of format tokenized trains on (run by `finetuning preprocess`, and by `finetuning sft` when save_path "
            "does not exist yet)."
        ),
    )
    chat_template_jinja: str | None = Field(
        None,
        min_length=1,
        description=(
            "A chat template of your own (Jinja text, as in a tokenizer's chat_template): installed on the "
            "tokenizer in place of its template and saved with the model; assistant turns are found and masked as "
            "with keep-original (from its generation prompt and what follows a reply). Implies chat_template_name: "
            "keep-original."
        ),
    )
    default_system_message: str | None = Field(
        None,
        min_length=1,
        description=(
            "A system message put first into every conversation that has none (chat-like rows, and the prompts of "
            "preference rows); a chat template that refuses system messages still refuses it."
        ),
    )
    deduplicate: bool = Field(
        False,
        description=(
            "Drop exact duplicate rows (the same content after the format's conversion) within each file, before "
            "the validation split; the run summary counts them. axolotl's dataset_exact_deduplication."
        ),
    )
    num_preprocess_workers: Int | None = Field(
        None,
        ge=1,
        description=(
            "Processes that tokenize the data (as the --num-preprocess-workers flag, which wins when given); a "
            "worker is used per 1,000 rows at most. null: one."
        ),
    )

    @field_validator("chat_template_jinja")
    @classmethod
    def _jinja_parses(cls, value: str | None) -> str | None:
        """A template that does not parse would fail only once the tokenizer renders the first conversation."""
        if value is not None and (problem := jinja_syntax_problem(value)) is not None:
            raise ValueError(problem)
        return value

    @model_validator(mode="after")
    def _jinja_replaces_the_named_template(self) -> ChatTrainValidConfig:
        if self.chat_template_jinja is None:
            return self
        if "chat_template_name" in self.model_fields_set and self.chat_template_name != "keep-original":
            raise ValueError(
                f"chat_template_jinja replaces the named template, but chat_template_name is "
                f"{self.chat_template_name!r}; drop chat_template_name (or set keep-original), or drop "
                "chat_template_jinja"
            )
        self.chat_template_name = "keep-original"
        return self


def jinja_syntax_problem(template: str) -> str | None:
    """Whether the template parses as transformers compiles chat templates (loop controls and its `generation`
    block tag included); a syntax error, with its line, or None."""
    import jinja2
    from jinja2.ext import Extension

    class GenerationBlock(Extension):
        """transformers' `{% generation %}...{% endgeneration %}` (assistant masks): parsed as a plain block."""

        tags = {"generation"}

        def parse(self, parser):
            lineno = next(parser.stream).lineno
            body = parser.parse_statements(("name:endgeneration",), drop_needle=True)
            return jinja2.nodes.Scope(body, lineno=lineno)

    environment = jinja2.Environment(extensions=[GenerationBlock, "jinja2.ext.loopcontrols"])
    try:
        environment.parse(template)
    except jinja2.TemplateSyntaxError as error:
        return f"the template does not parse: {error.message} (line {error.lineno})"
    return None
