"""Keep libraries a command will not use from being imported at all, when the process runs that one command.

peft imports bitsandbytes whenever it is installed (transformers' trainer imports peft, TRL too), and bitsandbytes
registers its kernels with `torch.compile` at import, which pulls in torch's compiler stack: measured here, 0.85 s
and 45 MB of every run (of ~6 s for a repeat run of cached data), for a library only quantized loading and 8-bit or
paged optimizers use. So a command-line process whose config mentions none of those marks bitsandbytes as absent
(`sys.modules["bitsandbytes"] = None`, the documented way to make an import fail): peft and transformers then see it
as not installed and never import it.

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


def keep_bitsandbytes_out(config_path: str | None) -> bool:
    """Mark bitsandbytes as absent for this process unless the config may need it; True when marked. Nothing
    changes when it is already imported, or the config cannot be read (the command reports that itself)."""
    if config_path is None or "bitsandbytes" in sys.modules:
        return False
    try:
        text = Path(config_path).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return False
    if config_needs_bitsandbytes(text):
        return False
    sys.modules["bitsandbytes"] = None  # type: ignore[assignment]  # import bitsandbytes → ImportError
    logger.debug("bitsandbytes: not needed by %s, not imported", config_path)
    return True
