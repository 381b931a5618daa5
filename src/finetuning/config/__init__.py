"""Experiment configuration: pydantic models (one module per config section), YAML loading, schema.

Importing this package does not import torch; the trainer arguments classes are imported when a config is
validated.
"""

from finetuning.config.experiment import (
    DPOExperimentConfig,
    ExperimentConfigBase,
    KTOExperimentConfig,
    SFTExperimentConfig,
)
from finetuning.config.loading import (
    ConfigError,
    config_class_for,
    dump_resolved_config,
    infer_method,
    load_any_config,
    load_config,
    validate_config,
)
from finetuning.config.schema import config_json_schema, render_config_reference
from finetuning.config.training_args import (
    TRAINING_ARGS_FORBIDDEN,
    TrainingArgsError,
    process_training_args,
    validate_training_args,
)

__all__ = [
    "TRAINING_ARGS_FORBIDDEN",
    "ConfigError",
    "DPOExperimentConfig",
    "ExperimentConfigBase",
    "KTOExperimentConfig",
    "SFTExperimentConfig",
    "TrainingArgsError",
    "config_class_for",
    "config_json_schema",
    "dump_resolved_config",
    "infer_method",
    "load_any_config",
    "load_config",
    "process_training_args",
    "render_config_reference",
    "validate_config",
    "validate_training_args",
]
