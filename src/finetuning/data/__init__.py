"""Data: readers with file:line errors, mixing and splitting, chat templates, tokenisation and masks, collators."""
