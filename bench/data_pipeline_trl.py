"""The plain-TRL side of bench/data_pipeline.py: `load_dataset("json")` + `SFTTrainer`, which tokenises the rows itself.

Run as its own process by the benchmark (so its wall time and peak RSS are those of a whole process, imports
included), with the same tiny model, data, template, masking, sequence length, batch and steps as the engine's run:

    python bench/data_pipeline_trl.py MODEL_DIR DATA.jsonl OUTPUT_DIR --steps 2 --batch 8 --max-length 1024 [--workers N]

Completions-only loss is TRL's `assistant_only_loss`, which needs `{% generation %}` blocks in the template: the
engine's chat-ml with the assistant turns wrapped in them (same text, so the same tokens). `load_dataset("json")`
writes its Arrow cache under `$HF_DATASETS_CACHE`; the benchmark points that at a fresh directory for the first run
and reuses it for the repeat, which is how TRL's repeat gets fast.
"""

from __future__ import annotations

import argparse
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

# The engine's chat-ml (finetuning.data.templates) with the assistant turns marked for `assistant_only_loss`: the
# trained span is the same as the engine's, the assistant content and its end marker.
CHAT_ML_WITH_GENERATION = (
    "{{ bos_token }}{% for message in messages %}"
    "{% if message['role'] == 'assistant' %}"
    "{{ '<|im_start|>assistant\n' }}{% generation %}{{ message['content'] + '<|im_end|>' }}{% endgeneration %}"
    "{{ '\n' }}"
    "{% else %}{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}{% endif %}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model_dir")
    parser.add_argument("data")
    parser.add_argument("output_dir")
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--max-length", type=int, default=1024)
    parser.add_argument("--workers", type=int, default=1, help="dataset_num_proc")
    args = parser.parse_args(argv)

    import torch
    from datasets import load_dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    torch.set_num_threads(1)  # as the engine's run in the benchmark (OMP_NUM_THREADS=1), see bench/README.md
    tokenizer = AutoTokenizer.from_pretrained(args.model_dir)
    tokenizer.chat_template = CHAT_ML_WITH_GENERATION
    tokenizer.add_special_tokens(
        {"additional_special_tokens": ["<|im_start|>", "<|im_end|>"]}, replace_extra_special_tokens=False
    )
    tokenizer.padding_side = "right"
    tokenizer.pad_token = tokenizer.pad_token or tokenizer.bos_token
    dataset = load_dataset("json", data_files=args.data, split="train")
    model = AutoModelForCausalLM.from_pretrained(args.model_dir)
    if len(tokenizer) > model.get_input_embeddings().weight.shape[0]:
        model.resize_token_embeddings(len(tokenizer), mean_resizing=True)
    config = SFTConfig(
        output_dir=args.output_dir,
        per_device_train_batch_size=args.batch,
        gradient_accumulation_steps=1,
        max_steps=args.steps,
        max_length=args.max_length,
        assistant_only_loss=True,
        dataset_num_proc=args.workers if args.workers > 1 else None,
        save_strategy="no",
        report_to="none",
        activation_checkpointing=False,
        bf16=False,
        use_cpu=not torch.cuda.is_available(),
        disable_tqdm=True,
    )
    trainer = SFTTrainer(model=model, args=config, train_dataset=dataset, processing_class=tokenizer)
    trainer.train()
    trainer.save_model()  # the engine saves its final model too


if __name__ == "__main__":
    main()
