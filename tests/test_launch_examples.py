"""The launch examples (examples/launch/): the Kubernetes sketch is valid YAML whose pods run torchrun on the engine
with a config the engine accepts, and the Slurm script is valid bash that really trains when srun runs it (here: one
node of 2 CPU processes, srun and scontrol stood in for by two-line scripts)."""

from __future__ import annotations

import json
import os
import shlex
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from finetuning.config import load_config
from tests.conftest import REPO, sft_config, write_yaml

LAUNCH = REPO / "examples" / "launch"
K8S = LAUNCH / "k8s-job.yaml"
SBATCH = LAUNCH / "slurm.sbatch"


def k8s_documents() -> dict[str, dict]:
    return {document["kind"]: document for document in yaml.safe_load_all(K8S.read_text(encoding="utf-8"))}


def job_command() -> list[str]:
    container = k8s_documents()["Job"]["spec"]["template"]["spec"]["containers"][0]
    return shlex.split(" ".join(container["command"][2:] + container["args"]))


def option(command: list[str], name: str) -> str:
    return command[command.index(name) + 1]


def test_k8s_yaml_opens_with_its_submit_command():
    assert (
        K8S.read_text(encoding="utf-8").splitlines()[0].startswith("# kubectl create -f examples/launch/k8s-job.yaml")
    )


def test_k8s_pods_run_torchrun_on_the_engine_with_a_c10d_rendezvous_at_pod_0():
    documents = k8s_documents()
    job, service = documents["Job"], documents["Service"]
    command = job_command()
    assert command[0] == "torchrun"
    assert command[-4:] == ["-m", "finetuning", "sft", "/configs/finetuning_config.yaml"]
    assert option(command, "--rdzv_backend") == "c10d"
    assert int(option(command, "--nnodes")) == job["spec"]["completions"] == job["spec"]["parallelism"]
    assert option(command, "--node_rank") == "$JOB_COMPLETION_INDEX" and job["spec"]["completionMode"] == "Indexed"
    # pod 0's stable DNS name: <job>-0.<subdomain>, the subdomain being the headless Service
    name = job["metadata"]["name"]
    assert job["spec"]["template"]["spec"]["subdomain"] == service["metadata"]["name"]
    assert service["spec"]["clusterIP"] == "None"
    assert option(command, "--rdzv_endpoint") == f"{name}-0.{service['metadata']['name']}:29500"
    limits = job["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]
    assert int(option(command, "--nproc_per_node")) == limits["nvidia.com/gpu"]


def test_k8s_config_map_holds_a_config_the_engine_accepts(tmp_path):
    config_map = k8s_documents()["ConfigMap"]
    path = tmp_path / "finetuning_config.yaml"
    path.write_text(config_map["data"]["finetuning_config.yaml"], encoding="utf-8")
    config = load_config(path)
    assert config.training_args["fsdp"] == "full_shard auto_wrap"
    assert config.run_conf.resume_from_checkpoint == "auto"


def test_sbatch_script_is_valid_bash_with_its_submit_command_on_line_2():
    lines = SBATCH.read_text(encoding="utf-8").splitlines()
    assert lines[0] == "#!/bin/bash"  # sbatch refuses a script whose first line is not an interpreter
    assert lines[1].startswith("# sbatch examples/launch/slurm.sbatch")
    subprocess.run(["bash", "-n", str(SBATCH)], check=True)
    text = SBATCH.read_text(encoding="utf-8")
    for needed in ("srun ", "torchrun", '--nnodes "$SLURM_NNODES"', "--rdzv_backend c10d", "-m finetuning sft"):
        assert needed in text


def _stub(directory: Path, name: str, body: str) -> None:
    path = directory / name
    path.write_text(f"#!/bin/bash\n{body}\n", encoding="utf-8")
    path.chmod(0o755)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.slow
def test_sbatch_script_trains_on_two_processes(tmp_path, tiny_model_dir):
    """The script as a Slurm node runs it: srun (stub: drops its own options) starts the venv's torchrun, which
    meets itself at the c10d rendezvous on the 'head node' (scontrol stub: 127.0.0.1) and trains 2 processes."""
    import torch

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    _stub(bin_dir, "srun", 'while [[ "$1" == --* ]]; do shift; done; exec "$@"')
    _stub(bin_dir, "scontrol", "echo 127.0.0.1")
    config = sft_config(
        tmp_path,
        tiny_model_dir,
        batchsize_conf={"total_train_batch_size": 4, "max_per_device_train_batch_size": 2},
        training_args={"max_steps": 2},
    )
    path = write_yaml(tmp_path / "c.yaml", config)
    env = {
        **os.environ,
        "PATH": f"{bin_dir}{os.pathsep}{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        "SLURM_NNODES": "1",
        "SLURM_JOB_NODELIST": "node001",
        "SLURM_JOB_ID": "4242",
        "SLURM_CPUS_PER_TASK": "2",
        "NPROC_PER_NODE": "2",
        "RDZV_PORT": str(_free_port()),
    }
    env.pop("OMP_NUM_THREADS", None)  # the script sets it: cpus per task / processes = 1
    result = subprocess.run(
        ["bash", str(SBATCH), str(path)], cwd=REPO, env=env, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stderr.count("batch: 2 process(es) x 2 per device x 1 accumulation = 4") == 1
    args = torch.load(tmp_path / "out" / "checkpoint-final" / "training_args.bin", weights_only=False)
    assert (args.world_size, args.parallel_mode.name) == (2, "DISTRIBUTED")
    steps = [json.loads(line).get("step") for line in (tmp_path / "out" / "metrics.jsonl").read_text().splitlines()]
    assert max(step for step in steps if step is not None) == 2
