"""Every module of the package imports on its own: an import cycle shows only when one of its modules is the first
imported, so each module is imported first once, with the package's modules forgotten in between."""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import REPO

# Run in a fresh interpreter: for each module, forget every `finetuning` module (the libraries stay loaded, they
# cannot take part in a cycle of ours) and import it first; print the modules that failed, with the error.
SCRIPT = """
import importlib, pkgutil, sys, traceback
import finetuning

names = sorted(m.name for m in pkgutil.walk_packages(finetuning.__path__, "finetuning."))
print("modules:", len(names))
for name in names:
    for loaded in [key for key in sys.modules if key == "finetuning" or key.startswith("finetuning.")]:
        del sys.modules[loaded]
    try:
        importlib.import_module(name)
    except Exception:
        print("FAILED", name, traceback.format_exc(limit=-3).replace("\\n", " | "))
"""


def test_every_module_imports_first_without_a_cycle():
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT], cwd=REPO, capture_output=True, text=True, timeout=300, check=True
    )
    assert "modules: " in result.stdout and int(result.stdout.split("modules: ")[1].split()[0]) > 40
    assert "FAILED" not in result.stdout, result.stdout
