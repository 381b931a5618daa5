"""Benchmark: how long the CLI takes to answer before it does any work — `finetuning --help`, `finetuning schema` and
`finetuning validate` on the demo config — as wall time of fresh subprocesses, best of N (the first run of each
command also warms the on-disk caches: the settings table and the check outcomes, so "best" is the warm figure).
Also prints which heavy libraries each command imported: `--help` and `schema` should import none.

    cd /work/main && .venv/bin/python bench/startup.py [--repeats 3] [--config examples/demo-facts-sft.yaml]

`validate` needs the demo's base model: it is built into demo_output/tiny-base first when missing (and removed
again afterwards when this script built it).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "transformers", "peft", "bitsandbytes", "trl", "datasets")
# runs the CLI in-process, then reports the heavy modules it left in sys.modules (on stderr, after the command's output)
PROBE = (
    "import sys, finetuning.cli as c\n"
    "try:\n    code = c.main(sys.argv[1:])\nexcept SystemExit as e:\n    code = e.code\n"
    f"print('heavy:', ','.join(m for m in {HEAVY!r} if m in sys.modules) or '-', file=sys.stderr)\n"
    "sys.exit(code or 0)\n"
)


def run_once(args: list[str]) -> tuple[float, str]:
    """Wall time of one fresh interpreter running the command, and the heavy modules it imported."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", PROBE, *args], cwd=REPO, env=env, capture_output=True, text=True, check=False
    )
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(args)} failed ({done.returncode}):\n{done.stderr[-2000:]}")
    heavy = next((line[7:] for line in done.stderr.splitlines() if line.startswith("heavy: ")), "?")
    return elapsed, heavy


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--config", default="examples/demo-facts-sft.yaml")
    options = parser.parse_args()
    base_model = REPO / "demo_output" / "tiny-base"
    built_here = not (base_model / "config.json").exists()
    if built_here:
        subprocess.run([sys.executable, "examples/demo.py", "--base-only"], cwd=REPO, check=True, capture_output=True)
    try:
        for label, args in (("--help", ["--help"]), ("schema", ["schema"]), ("validate", ["validate", options.config])):
            runs = [run_once(args) for _ in range(options.repeats)]
            times = [elapsed for elapsed, _ in runs]
            print(
                f"{label:<10} best {min(times):6.2f} s   first {times[0]:6.2f} s   "
                f"all {' '.join(f'{t:.2f}' for t in times)}   heavy imports: {runs[-1][1]}"
            )
    finally:
        if built_here:
            shutil.rmtree(REPO / "demo_output", ignore_errors=True)


if __name__ == "__main__":
    main()
