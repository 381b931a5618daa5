"""The worker through the runpod SDK's local API server (`finetuning worker --rp_serve_api`, `POST /runsync`), on
127.0.0.1 at a free port: real LoRA jobs on the tiny model, bad jobs, a killed training process, a resumed run, and
the credentials of one job invisible to the next and absent from every file and log."""

from __future__ import annotations

import ast
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import psutil
import pytest

from finetuning.train.checkpoints import last_complete_checkpoint
from tests.conftest import FACTS, write_jsonl

pytestmark = pytest.mark.slow

TOKENS = {"first": ("hf_FirstJobToken1234", "wandb-first-job-key-5678"), "second": ("hf_SecondJobToken99", "wb-2nd")}


@dataclass
class Server:
    process: subprocess.Popen
    port: int
    root: Path
    log: Path
    children: dict[int, dict[str, str]] = field(default_factory=dict)  # training processes seen: pid → environment

    def runsync(self, job: dict, timeout: float = 300) -> dict:
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.port}/runsync",
            data=json.dumps(job).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return json.loads(response.read())

    def training_processes(self) -> list[psutil.Process]:
        found = []
        for child in psutil.Process(self.process.pid).children(recursive=True):
            try:
                if "--dialect" in child.cmdline():
                    found.append(child)
                    self.children.setdefault(child.pid, child.environ())
            except psutil.NoSuchProcess:
                continue
        return found


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    base = tmp_path_factory.mktemp("worker")
    root, log, port = base / "runs", base / "server.log", free_port()
    environment = {key: value for key, value in os.environ.items() if key not in ("HF_TOKEN", "WANDB_API_KEY")}
    # DEBUG: the SDK logs each progress update it sends (it has no platform to send it to here)
    environment.update(FINETUNING_WORKER_ROOT=str(root), RUNPOD_LOG_LEVEL="DEBUG", WANDB_MODE="disabled")
    command = [sys.executable, "-m", "finetuning.cli", "worker", "--rp_serve_api", "--rp_api_host", "127.0.0.1"]
    with log.open("w") as output:
        process = subprocess.Popen(
            [*command, "--rp_api_port", str(port)], cwd=base, env=environment, stdout=output, stderr=subprocess.STDOUT
        )
    try:
        _wait_for(port, process, log)
        yield Server(process, port, root, log)
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _wait_for(port: int, process: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert process.poll() is None, log.read_text()
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    raise AssertionError("the worker's API server did not start:\n" + log.read_text())


@pytest.fixture(scope="module")
def alpaca(tmp_path_factory) -> Path:
    """The demo facts as alpaca rows (instruction / input / output)."""
    rows = []
    for line in FACTS.read_text().splitlines():
        messages = {m["role"]: m["content"] for m in json.loads(line)["messages"]}
        rows.append({"instruction": messages["user"], "input": "", "output": messages["assistant"]})
    return write_jsonl(tmp_path_factory.mktemp("data") / "facts-alpaca.jsonl", rows)


def lora_args(model: Path, data: Path, **changes) -> dict:
    return {
        "base_model": str(model),
        "datasets": [{"path": str(data), "type": "alpaca"}],
        "adapter": "lora",
        "lora_r": 8,
        "lora_alpha": 16,
        "lora_dropout": 0.0,
        "lora_target_modules": ["q_proj", "v_proj"],
        "sequence_len": 128,
        "micro_batch_size": 4,
        "gradient_accumulation_steps": 1,
        "max_steps": 6,
        "learning_rate": 0.003,
        "lr_scheduler": "constant",
        "logging_steps": 1,
        "val_set_size": 0,
        **changes,
    }


def job(args: dict | None, user_id: str = "alice", run_id: str = "", tokens: tuple[str, str] | None = None) -> dict:
    payload = {"user_id": user_id, "model_id": "tiny-facts", "run_id": run_id}
    if args is not None:
        payload["args"] = args
    if tokens is not None:
        payload["credentials"] = {"hf_token": tokens[0], "wandb_api_key": tokens[1]}
    return {"input": payload}


def failed(answer: dict) -> str:
    assert answer["status"] == "FAILED" and "output" not in answer, answer
    return answer["error"]


def assert_no_credential_anywhere(server: Server) -> None:
    """Not in any file of any run (configs, checkpoints, logs, reports), nor in the worker's own log."""
    secrets = [secret.encode() for pair in TOKENS.values() for secret in pair]
    files = [path for path in server.root.rglob("*") if path.is_file()] + [server.log]
    assert len(files) > 20
    assert [(path, secret) for path in files for secret in secrets if secret in path.read_bytes()] == []


def watch(server: Server, stop: threading.Event) -> None:
    """Record the environment of every training process of the server while `stop` is not set."""
    while not stop.is_set():
        server.training_processes()
        time.sleep(0.05)


def test_bad_jobs_fail_with_the_command_lines_words_and_a_good_one_then_completes(server, tiny_model_dir, alpaca):
    args = lora_args(tiny_model_dir, alpaca)
    unknown = failed(server.runsync(job({**args, "lora_rr": 4})))
    assert unknown == "error:\n  input.args.lora_rr: unknown key; did you mean 'lora_r'?"
    assert failed(server.runsync(job(args, user_id="../bob"))).startswith("error:\n  input.user_id: must be 1 to 128")
    assert failed(server.runsync(job(None))) == "error:\n  input.args: required key is missing"
    broken = alpaca.with_name("broken.jsonl")
    broken.write_text(alpaca.read_text().splitlines()[0] + '\n{"instruction": "cut off\n')
    malformed = failed(server.runsync(job(lora_args(tiny_model_dir, broken))))
    assert f"{broken}:2: " in malformed, malformed

    stop = threading.Event()
    watcher = threading.Thread(target=watch, args=(server, stop))
    watcher.start()
    try:
        answer = server.runsync(job(args, tokens=TOKENS["first"]))
    finally:
        stop.set()
        watcher.join()
    assert answer["status"] == "COMPLETED", answer
    result = answer["output"]
    run_dir = server.root / "alice" / "tiny-facts" / answer["id"]  # an empty run_id: named by the job's id
    assert result["output_dir"] == str(run_dir)
    assert result["status"] == "completed" and result["steps"] == 6 and result["tokens"] > 0
    assert result["best_loss"] <= result["final_loss"] and result["wall_seconds"] > 0
    assert result["summary"].startswith("# Run report")
    assert Path(result["final_model"]) == run_dir / "checkpoint-final"
    (environment,) = server.children.values()
    assert (environment.get("HF_TOKEN"), environment.get("WANDB_API_KEY")) == TOKENS["first"]

    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(result["final_model"])
    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_model_dir), result["final_model"])
    logits = model(**tokenizer("What is the capital of Tusello?", return_tensors="pt")).logits
    assert logits.shape[-1] >= len(tokenizer)

    log = server.log.read_text()
    marker = "Sending Progress Update: "  # the SDK's DEBUG line for each update, the record as a Python dict
    sent = [ast.literal_eval(line.split(marker, 1)[1]) for line in log.splitlines() if marker in line]
    assert [record["step"] for record in sent] == [1, 2, 3, 4, 5, 6]
    assert all(record["total_steps"] == 6 and record["loss"] > 0 and record["learning_rate"] for record in sent)
    assert sent[-1]["eta_seconds"] == 0.0
    assert_no_credential_anywhere(server)


def test_a_killed_training_fails_its_job_and_the_same_job_then_resumes(server, tiny_model_dir, alpaca):
    args = lora_args(tiny_model_dir, alpaca, max_steps=60, save_steps=4)
    answers: list[dict] = []
    submit = threading.Thread(
        target=lambda: answers.append(server.runsync(job(args, run_id="r1", tokens=TOKENS["second"])))
    )
    submit.start()
    output_dir = server.root / "alice" / "tiny-facts" / "r1"
    deadline = time.monotonic() + 120
    while (last_complete_checkpoint(output_dir) if output_dir.is_dir() else None) is None:
        assert time.monotonic() < deadline and submit.is_alive(), answers
        time.sleep(0.05)
    (training,) = server.training_processes()
    assert server.children[training.pid]["HF_TOKEN"] == TOKENS["second"][0]
    os.kill(training.pid, signal.SIGKILL)
    submit.join(timeout=60)
    error = failed(answers[0])
    assert error.startswith("the training process was killed by SIGKILL at step "), error
    assert "last checkpoint: " in error and "submit the same job again" in error

    seen = set(server.children)
    stop = threading.Event()
    watcher = threading.Thread(target=watch, args=(server, stop))
    watcher.start()
    try:
        answer = server.runsync(job(args, run_id="r1"))  # the same ids, no credentials this time
    finally:
        stop.set()
        watcher.join()
    assert answer["status"] == "COMPLETED", answer
    assert answer["output"]["steps"] == 60
    (resumed,) = [environment for pid, environment in server.children.items() if pid not in seen]
    assert "HF_TOKEN" not in resumed and "WANDB_API_KEY" not in resumed  # the killed job's tokens are gone
    assert "resuming from " in (output_dir / "worker" / "training.log").read_text()

    # hub_model_id: refused without a token before anything runs; with one, the finished run (not trained again) is
    # pushed by a process of its own, and here, offline, the push's error is the job's
    pushed = {**args, "hub_model_id": "alice/tiny-facts"}
    no_token = failed(server.runsync(job(pushed, run_id="r1")))
    assert no_token == "error:\n  input.args.hub_model_id: pushing to the hub needs input.credentials.hf_token"
    offline = failed(server.runsync(job(pushed, run_id="r1", tokens=TOKENS["second"])))
    assert offline.startswith(f"error:\n  input.args.hub_model_id: pushing {output_dir / 'checkpoint-final'} to ")
    assert "OfflineModeIsEnabled" in offline and "the model is saved" in offline
    assert_no_credential_anywhere(server)
