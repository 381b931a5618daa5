#!/bin/bash
# bash bench/gpu_setup.sh download   (here, with PyPI: fills the git-ignored wheels/ that travels with the tree)
# bash bench/gpu_setup.sh install    (on the GPU machine, offline: then `python bench/gpu.py`)
#
# The GPU machine (Python 3.12, torch with CUDA, transformers, peft, accelerate, tokenizers, safetensors, pyarrow,
# pyyaml, rich preinstalled) lacks trl, datasets and pydantic and has no network: their wheels (pure Python or
# manylinux for 3.12, ~6 MB, the versions this repository is tested with) are downloaded here and installed there
# without dependencies. The package itself needs no install: bench/gpu.py puts src/ on the path when `finetuning` is
# not importable (or: pip install --no-deps --no-build-isolation -e .).
set -euo pipefail
cd "$(dirname "$0")/.."
WHEELS=wheels
PACKAGES=(
  trl==1.16.0 datasets==5.2.0 pydantic==2.14.4 pydantic-core==2.50.5 annotated-types==0.8.0
  typing-inspection==0.4.5 dill==0.4.1 multiprocess==0.70.19 xxhash==4.1.0
)

case "${1:-}" in
  download)
    python3 -m pip download --python-version 3.12 --only-binary=:all: --no-deps -d "$WHEELS" \
      --platform manylinux_2_17_x86_64 --platform manylinux_2_24_x86_64 --platform manylinux_2_28_x86_64 \
      "${PACKAGES[@]}" ${EXTRA_WHEELS:-}   # EXTRA_WHEELS="pandas fsspec" if the check below names them
    du -sh "$WHEELS"
    ;;
  install)
    python -m pip install --no-index --no-deps "$WHEELS"/*.whl
    # what the engine and both benchmark sides import; a missing one is named, to add to EXTRA_WHEELS
    PYTHONPATH=src python -c "
import importlib.util as u
missing = [m for m in ('trl', 'datasets', 'pydantic', 'peft', 'accelerate', 'yaml', 'rich', 'pandas', 'fsspec',
                       'finetuning.cli') if u.find_spec(m) is None]
print('missing:', ', '.join(missing) if missing else 'nothing')
import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())
"
    ;;
  *)
    echo "usage: bash bench/gpu_setup.sh download|install" >&2
    exit 2
    ;;
esac
