"""`num_tokens` (TRL's running count of training tokens, logged to metrics.jsonl) continues across a resume: a run
killed after a checkpoint and resumed logs at every step the count of the same run never interrupted."""

from __future__ import annotations

import json
import signal

import pytest

from finetuning.cli import main
from finetuning.tracking.report import METRICS_FILE, metric_series, read_metrics
from tests.reliability.conftest import resumable_config, run_with_faults

STEPS = 6  # 2 micro-batches per step, a checkpoint every 3 steps


def num_tokens(output_dir) -> dict[int, float]:
    steps, values = metric_series(read_metrics(output_dir / METRICS_FILE), "num_tokens")
    return dict(zip(steps, values, strict=True))


@pytest.mark.slow  # three short training processes, about a minute
def test_resumed_run_continues_the_token_count(tmp_path, tiny_model_dir):
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    straight.mkdir(), killed.mkdir()
    assert main(["sft", str(resumable_config(straight, tiny_model_dir, training_args={"max_steps": STEPS}))]) == 0
    reference = num_tokens(straight / "out")
    assert sorted(reference) == list(range(1, STEPS + 1)) and reference[STEPS] > reference[1] > 0

    config = resumable_config(killed, tiny_model_dir, training_args={"max_steps": STEPS})
    stopped = run_with_faults(config, "micro:9:KILL")  # the first micro-batch of step 5: checkpoint-3 is the last
    assert stopped.returncode == -signal.SIGKILL, stopped.stderr[-3000:]
    state = json.loads((killed / "out" / "checkpoint-3" / "trainer_state.json").read_text())
    assert state["stateful_callbacks"]["TrainTokenCount"]["args"]["num_tokens"] == reference[3]

    assert main(["sft", str(config)]) == 0
    resumed = num_tokens(killed / "out")
    assert resumed[4] > reference[3]  # continues above the checkpoint's count instead of restarting from 0
    assert resumed == reference  # steps 4-6 re-run after the resume count exactly as the uninterrupted run
