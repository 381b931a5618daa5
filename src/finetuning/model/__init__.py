"""Model side: tokenizer set-up (templates, pad token, inference save), model loading, vocab expansion, PEFT."""
