"""Data input section (`data_conf`).

Only the *shape* of the data configuration is checked here. Whether the files exist and hold valid rows is the
data layer's job (it reports `file:line` errors), so a config can be validated on a machine without the data.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, model_validator

from finetuning.config._base import Float, Int, StrictModel

DATA_TYPE_DESCRIPTION = "generally, the data_type is automatically set based on the experiment config method"

ChatTemplateName = Literal["mistral-with-system", "chat-ml", "poro", "keep-original", "simplified-llama31"]
MissingPadTokenStrategy = Literal["eos-repurpose", "bos-repurpose", "unk-repurpose", "unk-convert-to-eos"]


DatasetFormat = Literal["messages", "alpaca", "sharegpt", "oasst", "prompt_completion", "text"]

PATH_DESCRIPTION = (
    "Local path to a JSONL file in the finetuning data format; or a .json (one JSON array), .parquet or .csv file, "
    "a directory written by datasets.save_to_disk, or a Hugging Face Hub dataset id"
)


class DatasetSource(StrictModel):
    """Where a dataset's rows come from and how they are written (shared by both dataset entry kinds)."""

    path: str = Field(description=PATH_DESCRIPTION)
    format: DatasetFormat = Field(
        "messages",
        description=(
            "Row format (SFT): messages (chat rows, the default), alpaca (instruction/input/output), sharegpt "
            "(conversations of from/value), oasst (INSTRUCTION/RESPONSE), prompt_completion (prompt/completion), or "
            "text (raw text, every token trained: continued pre-training). DPO/KTO rows have their own shape."
        ),
    )
    name: str | None = Field(None, description="Hub datasets: the configuration (subset) name")
    split: str | None = Field(
        None, description="Hub datasets and saved dataset dicts: the split to read (default train)"
    )
    data_files: str | list[str] | None = Field(None, description="Hub datasets: which files of the repository to read")
    revision: str | None = Field(None, description="Hub datasets: the git revision (branch, tag or commit) to read")


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
            "of the same data, tokenizer and settings reuses it. axolotl's dataset_prepared_path and VectorLM's "
            "save_path map to it."
        ),
    )
