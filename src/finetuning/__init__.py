"""finetuning: config-driven fine-tuning of large language models on the Hugging Face stack."""

__version__ = "0.1.0"
