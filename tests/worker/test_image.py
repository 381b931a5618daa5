"""The worker's image cannot be built here (no container runtime): its Dockerfile is checked instead — a CUDA torch
base, the package installed with the worker extra, and the worker command as what the container runs."""

from __future__ import annotations

import json
import re

from tests.conftest import REPO

try:
    import tomllib
except ImportError:  # Python 3.10: the same parser, as a package (runpod depends on it)
    import tomli as tomllib


def instructions() -> list[tuple[str, str]]:
    text = (REPO / "Dockerfile").read_text(encoding="utf-8")
    joined = re.sub(r"\\\n", " ", text)  # continuation lines
    lines = [line.strip() for line in joined.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1]) for line in lines]


def test_the_image_installs_the_package_with_the_worker_extra_on_a_cuda_torch():
    steps = instructions()
    base = dict(steps)["ARG"]
    assert re.fullmatch(r"BASE_IMAGE=pytorch/pytorch:[\d.]+-cuda[\d.]+-cudnn\d+-runtime", base)
    copied = [value for kind, value in steps if kind == "COPY"]
    assert "pyproject.toml README.md ./" in copied and "src ./src" in copied
    (install,) = [value for kind, value in steps if kind == "RUN" and "pip install" in value]
    assert 'pip install ".[worker]"' in install and "torch.version.cuda" in install
    extras = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert any(requirement.startswith("runpod") for requirement in extras["worker"])


def test_the_container_runs_the_worker_command():
    (cmd,) = [value for kind, value in instructions() if kind == "CMD"]
    assert json.loads(cmd) == ["finetuning", "worker"]
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["finetuning"] == "finetuning.cli:main"
