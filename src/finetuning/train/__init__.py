"""What every method shares: batch-size arithmetic, learning-rate overrides, training arguments, resume."""
