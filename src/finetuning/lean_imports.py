"""Keep libraries a command will not use from being imported at all, when the process runs that one command.

peft imports bitsandbytes whenever it is installed (transformers' trainer imports peft, TRL too), and bitsandbytes
registers its kernels with `torch.compile` at import, which pulls in torch's compiler stack: measured here, 0.85 s
and 45 MB of every run (of ~6 s for a repeat run of cached data), for a library only quantized loading and 8-bit or
paged optimizers use. So a command-line process whose config mentions none of those marks bitsandbytes as absent
(`sys.modules["bitsandbytes"] = None`, the documented way to make an import fail): peft and transformers then see it
as not installed and never import it. DeepSpeed likewise: accelerate imports it whenever it is installed (to unwrap
models, in every trainer's set-up), 1.7 s and a warning line here, for runs that only `training_args.deepspeed`
(or a dialect's deepspeed keys) makes use it.

Only for a whole process (`finetuning ...` from the shell, where `cli.main` gets no argv): a library marked absent
stays so for the rest of the process, and peft decides at import which of its layers exist, so code that calls
`main([...])` in-process (tests, notebooks) is left alone.
"""

from __future__ import annotations

import logging
import re
import sys
from pathlib import Path

logger = logging.getLogger(__name__)

# Words of a config (any dialect, comments included) that may mean bitsandbytes is needed: quantized loading
# (quant_conf bits-and-bytes, load_in_4bit/8bit, qlora) and its optimizers (adamw_bnb_8bit, paged_adamw_32bit, ...).
# A false match only costs the time saved; a miss would make a quantized run fail, so the list is generous.
BITSANDBYTES_WORDS = ("bnb", "bitsandbytes", "bits-and-bytes", "bits_and_bytes", "8bit", "4bit", "int8", "int4")
BITSANDBYTES_WORDS += ("qlora", "paged", "load_in", "quantiz")
_NO_QUANTIZATION = re.compile(r"""quantization_type["']?\s*:\s*["']?no-quantization""")


def config_needs_bitsandbytes(text: str) -> bool:
    """Whether the config text may need bitsandbytes; `quantization_type: no-quantization` does not count."""
    lowered = _NO_QUANTIZATION.sub("", text.lower())
    return any(word in lowered for word in BITSANDBYTES_WORDS)


# Words of a config that may mean DeepSpeed is used: training_args.deepspeed, axolotl's `deepspeed`, the sectioned
# dialect's use_deepspeed / zero_stage, a DeepSpeed JSON written inline.
DEEPSPEED_WORDS = ("deepspeed", "zero_stage", "zero_optimization")


def config_needs_deepspeed(text: str) -> bool:
    lowered = text.lower()
    return any(word in lowered for word in DEEPSPEED_WORDS)


# library → whether a config's text may need it
OPTIONAL_LIBRARIES = {"bitsandbytes": config_needs_bitsandbytes, "deepspeed": config_needs_deepspeed}


def keep_unneeded_libraries_out(config_path: str | None, extra_text: str = "") -> list[str]:
    """Mark each optional library as absent for this process unless the config (or `extra_text`: the command line's
    overrides) may need it; returns those marked. Nothing changes for a library already imported, nor when the
    config cannot be read (the command reports that itself)."""
    if config_path is None:
        return []
    try:
        text = Path(config_path).read_text(encoding="utf-8", errors="replace") + "\n" + extra_text
    except OSError:
        return []
    marked = []
    for library, needs in OPTIONAL_LIBRARIES.items():
        if library in sys.modules or needs(text):
            continue
        sys.modules[library] = None  # type: ignore[assignment]  # import LIBRARY → ImportError
        marked.append(library)
    if marked:
        logger.debug("%s: not needed by %s, not imported", ", ".join(marked), config_path)
    return marked
