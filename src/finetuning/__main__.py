"""`python -m finetuning ...`: the same command line as the `finetuning` script, so launchers that start a module
(`torchrun -m finetuning sft cfg.yaml`, `accelerate launch -m finetuning ...`) need no path to it."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
