"""Launch the engine's CLI on several CPU processes the way users do (torchrun), on 127.0.0.1 and a free port, so
that tests running side by side never meet on one rendezvous."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def launch_env(**extra: str) -> dict[str, str]:
    """One thread per process (2 cores here), and the test session's environment (offline, the test cache)."""
    return {**os.environ, "OMP_NUM_THREADS": "1", **extra}


def torchrun(
    *cli_args: str,
    nproc: int = 2,
    launcher_args: tuple[str, ...] = (),
    env: dict[str, str] | None = None,
    timeout: int = 600,
) -> subprocess.CompletedProcess:
    """`torchrun --nproc_per_node NPROC [launcher_args] -m finetuning.cli CLI_ARGS...`, run to its end."""
    command = torchrun_command(*cli_args, nproc=nproc, launcher_args=launcher_args)
    return subprocess.run(command, cwd=REPO, capture_output=True, text=True, env=env or launch_env(), timeout=timeout)


def torchrun_command(*cli_args: str, nproc: int = 2, launcher_args: tuple[str, ...] = ()) -> list[str]:
    rendezvous = (
        ()
        if any(a.startswith("--master_port") or a.startswith("--rdzv") for a in launcher_args)
        else (
            "--master_addr",
            "127.0.0.1",
            "--master_port",
            str(free_port()),
        )
    )
    return [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        str(nproc),
        *rendezvous,
        *launcher_args,
        "-m",
        "finetuning.cli",
        *cli_args,
    ]


def logged_losses(output_dir: Path) -> list[float]:
    """The training loss of every logged step, from the run's metrics.jsonl (written by the main process)."""
    import json

    rows = [json.loads(line) for line in (output_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]
    return [row["loss"] for row in rows if "loss" in row]


def torchrun_module_command(
    module: str, *module_args: str, nproc: int = 2, launcher_args: tuple[str, ...] = ()
) -> list[str]:
    """`torchrun ... -m MODULE MODULE_ARGS...`: the engine behind a test harness (tests/reliability/faults.py)."""
    command = torchrun_command(nproc=nproc, launcher_args=launcher_args)
    return [*command[: command.index("finetuning.cli")], module, *module_args]


def two_node_commands(*cli_args: str) -> list[list[str]]:
    """Two machines simulated on loopback: one torchrun per "node" (`--nnodes 2 --node_rank 0|1`, one process each),
    meeting at the same master address and port; start them together."""
    port = str(free_port())
    return [
        torchrun_command(
            *cli_args,
            nproc=1,
            launcher_args=(
                "--nnodes",
                "2",
                "--node_rank",
                str(rank),
                "--master_addr",
                "127.0.0.1",
                "--master_port",
                port,
            ),
        )
        for rank in (0, 1)
    ]


def run_together(commands: list[list[str]], env: dict[str, str] | None = None, timeout: int = 600) -> list:
    """Start every command at once (as the nodes of one job), wait for all; (returncode, stdout, stderr) of each.
    Output goes to files: a pipe nobody reads while waiting for another process could fill and stall a rank."""
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        outputs = [(Path(folder) / f"{i}.out", Path(folder) / f"{i}.err") for i in range(len(commands))]
        processes = []
        try:
            for command, (out, err) in zip(commands, outputs, strict=True):
                with out.open("w") as stdout, err.open("w") as stderr:
                    processes.append(
                        subprocess.Popen(
                            command, cwd=REPO, stdout=stdout, stderr=stderr, text=True, env=env or launch_env()
                        )
                    )
            codes = [process.wait(timeout=timeout) for process in processes]
        finally:
            for process in processes:
                if process.poll() is None:
                    process.kill()
        return [(code, out.read_text(), err.read_text()) for code, (out, err) in zip(codes, outputs, strict=True)]


def accelerate_launch_command(*cli_args: str, nproc: int = 2) -> list[str]:
    """`accelerate launch` the route that starts NPROC CPU processes: `--multi_gpu` (torchrun underneath; the engine
    sets use_cpu). `--cpu --num_processes N` would start one process (accelerate's doing, see platform-facts.md)."""
    return [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        "--multi_gpu",
        "--num_processes",
        str(nproc),
        "--num_machines",
        "1",
        "--main_process_ip",
        "127.0.0.1",
        "--main_process_port",
        str(free_port()),
        "-m",
        "finetuning",
        *cli_args,
    ]
