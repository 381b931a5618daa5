"""Checkpoints that are never half-written, and which one to resume from (`run_conf.resume_from_checkpoint`).

A checkpoint is written to `output_dir/.staging/checkpoint-N` and renamed to `output_dir/checkpoint-N` only once
every file is on disk: a job killed during a save leaves the previous checkpoints intact and nothing that 'auto'
resume would pick. Old checkpoints are removed by renaming them away first, never the one just written.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

from ..paths import resolve_user_path

logger = logging.getLogger(__name__)

STAGING_DIR = ".staging"  # hidden, and not `checkpoint-N`: nothing looks for checkpoints there
# How the batch was split and which data it read when the checkpoint was written; resuming with another split or
# other data would continue at the wrong place in the data (train/preflight.py compares). The Trainer keeps the
# split only in its pickled training_args.bin, and the data not at all.
RESUME_RECORD = "finetuning_resume.json"
TRASH_PREFIX = ".trash-"
_STEP_CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")
# The Trainer writes trainer_state.json last; weights are the model's or an adapter's, whole or sharded.
_WEIGHTS = ("model.safetensors", "adapter_model.safetensors", "model.safetensors.index.json", "pytorch_model.bin")
# Sharded training saves per-rank state instead: FSDP's SHARDED_STATE_DICT a distributed-checkpoint directory,
# DeepSpeed its `global_stepN/` directory, named by the `latest` file it writes once that directory is complete.
_SHARDED_WEIGHTS = ("pytorch_model_fsdp_0", "latest")


def checkpoint_step(path: Path) -> int | None:
    match = _STEP_CHECKPOINT.match(path.name)
    return int(match.group(1)) if match else None


def step_checkpoints(output_dir: Path) -> list[Path]:
    """`checkpoint-N` directories, oldest step first."""
    if not output_dir.is_dir():
        return []
    found = [path for path in output_dir.iterdir() if path.is_dir() and checkpoint_step(path) is not None]
    return sorted(found, key=checkpoint_step)


def incomplete_reason(checkpoint: Path) -> str | None:
    """Why a checkpoint directory cannot be resumed from (written by a tool that does not stage, then killed)."""
    if not (checkpoint / "trainer_state.json").is_file():
        return "no trainer_state.json (the save did not finish)"
    if not any((checkpoint / name).is_file() for name in _WEIGHTS) and not _has_sharded_weights(checkpoint):
        return "no model or adapter weights"
    return None


def _has_sharded_weights(checkpoint: Path) -> bool:
    fsdp, deepspeed_latest = (checkpoint / name for name in _SHARDED_WEIGHTS)
    if fsdp.is_dir():
        return True
    if not deepspeed_latest.is_file():
        return False
    tag = deepspeed_latest.read_text(encoding="utf-8").strip()
    return bool(tag) and (checkpoint / tag).is_dir()


def last_complete_checkpoint(output_dir: Path) -> Path | None:
    """The newest checkpoint that can be resumed from; incomplete ones are skipped with a warning."""
    for checkpoint in reversed(step_checkpoints(output_dir)):
        reason = incomplete_reason(checkpoint)
        if reason is None:
            return checkpoint
        logger.warning("skipping incomplete checkpoint %s: %s", checkpoint, reason)
    return None


def resolve_resume(setting: bool | str, output_dir: str) -> tuple[str | None, list[str]]:
    """(checkpoint to resume from, problems): false → start fresh; true → the newest complete checkpoint (a problem
    if none); 'auto' → the newest complete checkpoint if any, else start fresh; any other string → that path, which
    the resume checks then look at (train/resume_checks.py: missing, incomplete, incompatible). Decided before any
    model loads."""
    if setting is False:
        return None, []
    out = Path(output_dir)
    if setting not in (True, "auto"):
        return str(resolve_user_path(setting)), []
    last = last_complete_checkpoint(out)
    if setting is True and last is None:
        return None, [
            f"run_conf.resume_from_checkpoint: true, but {out.resolve()} has no complete checkpoint; "
            "use 'auto' to resume only when there is one"
        ]
    if setting == "auto" and last:
        logger.info("resume_from_checkpoint=auto: newest complete checkpoint %s", last)  # also run by validate
    elif setting == "auto":
        logger.info("resume_from_checkpoint=auto: no checkpoint in %s, a fresh start", out.resolve())
    return (str(last) if last else None), []


def _fsync_tree(directory: Path) -> None:
    """Flush every file and the directory entries, so a rename never publishes data still only in memory (a node
    that crashes after the rename would otherwise leave a complete-looking checkpoint of truncated files). Files are
    flushed in parallel: fsync releases the GIL, and storage takes concurrent flushes faster than serial ones."""
    from concurrent.futures import ThreadPoolExecutor

    paths = sorted(directory.rglob("*"), reverse=True)
    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(_fsync_path, [path for path in paths if not path.is_dir()]))
    for path in [path for path in paths if path.is_dir()] + [directory]:
        _fsync_path(path)


def _fsync_path(path: Path) -> None:
    descriptor = os.open(path, os.O_RDONLY | (os.O_DIRECTORY if path.is_dir() else 0))
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def remove_directory(path: Path) -> None:
    """Rename away, then delete: a deletion cut short leaves a hidden `.trash-*`, never a damaged checkpoint."""
    trash = path.with_name(TRASH_PREFIX + path.name)
    shutil.rmtree(trash, ignore_errors=True)
    os.replace(path, trash)
    shutil.rmtree(trash, ignore_errors=True)


def publish(staged: Path, final: Path) -> None:
    """Make a fully written staged checkpoint visible under its final name in one rename."""
    _fsync_tree(staged)
    if final.exists():  # the same step saved again (e.g. stopped on a save step): replace the old copy
        remove_directory(final)
    os.replace(staged, final)
    _fsync_path(final.parent)


@contextlib.contextmanager
def staged_save(final: Path, accelerator, main: bool):
    """Yield the directory to write `final` into (`.staging/<name>` beside it); once every process has written its
    files, the main process renames it into place. An exception in the block publishes nothing."""
    staging_root = final.parent / STAGING_DIR
    if main:
        shutil.rmtree(staging_root, ignore_errors=True)  # what a killed save left behind
        staging_root.mkdir(parents=True)
    accelerator.wait_for_everyone()
    yield staging_root / final.name
    accelerator.wait_for_everyone()  # every rank has written its files (e.g. its RNG state)
    if main:
        publish(staging_root / final.name, final)
        shutil.rmtree(staging_root, ignore_errors=True)
    accelerator.wait_for_everyone()


def rotate(output_dir: Path, limit: int | None, keep: set[Path]) -> None:
    """`save_total_limit`: delete the oldest step checkpoints beyond the limit, never one in `keep` (the one just
    written, the best one). Unlike ordering by mtime or step alone, a run resumed from an older checkpoint
    cannot lose the checkpoint it has just written."""
    if not limit or limit <= 0:
        return
    checkpoints = step_checkpoints(output_dir)
    excess = len(checkpoints) - max(limit, len(keep))
    for checkpoint in [path for path in checkpoints if path not in keep][: max(excess, 0)]:
        logger.info("save_total_limit=%d: deleting %s", limit, checkpoint)
        remove_directory(checkpoint)


def write_resume_record(
    checkpoint: Path, args, data_fingerprint: str | None, state=None, training_length: dict | None = None
) -> None:
    """What a later run compares before it continues from (or stops at) this save: the batch split, the data, the
    step reached of how many and the settings that decided that number (see `finished_run`)."""
    record = {
        "per_device_train_batch_size": args.per_device_train_batch_size,
        "gradient_accumulation_steps": args.gradient_accumulation_steps,
        "world_size": args.world_size,
        "data_fingerprint": data_fingerprint,
    }
    if state is not None:
        record.update(global_step=state.global_step, max_steps=state.max_steps)
    if training_length is not None:
        record["training_length"] = training_length
    (checkpoint / RESUME_RECORD).write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")


def read_json_object(path: Path) -> dict | None:
    """A JSON file holding an object (config.json, adapter_config.json, a resume record), or None when it is
    missing, unreadable or holds something else: the checks that read it then have nothing to compare."""
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def read_resume_record(checkpoint: Path) -> dict:
    """The batch split (and data fingerprint) a checkpoint was written with: our record, else the per-device size
    in trainer_state.json (checkpoints from other tools); {} when neither is readable."""
    state_keys = {"train_batch_size": "per_device_train_batch_size"}
    for name, keys in ((RESUME_RECORD, None), ("trainer_state.json", state_keys)):
        found = read_json_object(checkpoint / name)
        if found is not None:
            return found if keys is None else {new: found[old] for old, new in keys.items() if old in found}
    return {}


@dataclass(frozen=True)
class FinishedRun:
    """A run whose final model is already in output_dir, trained with the settings of this config."""

    final_dir: Path
    step: int
    max_steps: int

    def describe(self) -> str:
        return f"already finished (step {self.step} of {self.max_steps}): nothing to do; final model: {self.final_dir}"


class RunAlreadyFinished(Exception):  # noqa: N818 — an outcome, not an error: the command exits 0
    """Raised before anything loads when the run a config describes has finished: re-running it would train zero
    steps and replace its report and final model by copies of themselves."""

    def __init__(self, finished: FinishedRun):
        self.finished = finished
        super().__init__(finished.describe())


def finished_run(final_dir: Path, data_fingerprint: str, training_length: dict, train_batch: int) -> FinishedRun | None:
    """The final model in `final_dir` when it was trained on this data, for this length and batch size (its resume
    record says so); None otherwise — e.g. max_steps was raised to train on from the last checkpoint."""
    record = read_resume_record(final_dir) if final_dir.is_dir() else {}
    if record.get("global_step") is None or record.get("data_fingerprint") != data_fingerprint:
        return None
    if record.get("training_length") != training_length:
        return None
    recorded_batch = (
        (record.get("per_device_train_batch_size") or 0)
        * (record.get("gradient_accumulation_steps") or 0)
        * (record.get("world_size") or 0)
    )
    if recorded_batch != train_batch:
        return None
    return FinishedRun(final_dir, record["global_step"], record.get("max_steps") or record["global_step"])


def previous_outputs(output_dir: Path, final_name: str) -> list[Path]:
    """What a fresh start would delete (save_total_limit rotation) or replace (final model, run report): complete
    step checkpoints and the final model of an earlier run."""
    found = [checkpoint for checkpoint in step_checkpoints(output_dir) if incomplete_reason(checkpoint) is None]
    if (output_dir / final_name).is_dir():
        found.append(output_dir / final_name)
    return found


def fresh_start_problems(output_dir: Path, final_name: str, overwrite: bool) -> list[str]:
    """Starting afresh where another run left its checkpoints would silently delete them: refuse unless asked."""
    found = previous_outputs(output_dir, final_name)
    if not found or overwrite:
        return []
    names = ", ".join(path.name for path in found[:4]) + (f" and {len(found) - 4} more" if len(found) > 4 else "")
    return [
        f"training_args.output_dir: {output_dir} holds the outputs of an earlier run ({names}); starting afresh "
        "would delete its checkpoints and replace its final model and report. Choose one: continue it "
        "(run_conf.resume_from_checkpoint: auto), write to another training_args.output_dir, or replace it "
        "(training_args.overwrite_output_dir: true)"
    ]


def clear_previous_outputs(output_dir: Path, final_name: str) -> None:
    """`overwrite_output_dir: true` on a fresh start: the earlier run's checkpoints and report go first, so that
    `auto` can never later pick one of its checkpoints as this run's newest."""
    from ..tracking.report import LOSS_CURVE_FILE, METRICS_FILE, SUMMARY_FILE

    for path in previous_outputs(output_dir, final_name):
        logger.info("overwrite_output_dir: deleting %s", path)
        remove_directory(path)
    for name in (METRICS_FILE, LOSS_CURVE_FILE, SUMMARY_FILE, "loss_curve.png"):  # .png: as earlier versions drew it
        (output_dir / name).unlink(missing_ok=True)


class AtomicCheckpoints:
    """Trainer mixin: every checkpoint is staged, flushed, then renamed into place (see the module docstring).

    The Trainer's own save code runs unchanged; only the directory it saves into is redirected while it runs.
    """

    _staging_root: str | None = None
    data_fingerprint: str | None = None  # set by the recipe (data.inputs.data_fingerprint), stored with each save
    training_length: dict | None = None  # set by the recipe (train.run.training_length), stored with each save

    def _get_output_dir(self, trial) -> str:
        return self._staging_root or super()._get_output_dir(trial)

    def _save_checkpoint(self, model, trial) -> None:
        run_dir = Path(super()._get_output_dir(trial))
        final = run_dir / f"checkpoint-{self.state.global_step}"
        main = self.args.should_save
        with staged_save(final, self.accelerator, main) as staged:
            self._staging_root = str(staged.parent)
            try:
                super()._save_checkpoint(model, trial)
            finally:
                self._staging_root = None
            # the Trainer named the staged path as the best checkpoint; every process must know its real name, or
            # load_best_model_at_end looks for it in the staging directory ("Could not locate the best model")
            renamed_best = self.state.best_model_checkpoint == str(staged)
            if renamed_best:
                self.state.best_model_checkpoint = str(final)
            if main:
                write_resume_record(staged, self.args, self.data_fingerprint, self.state, self.training_length)
                if renamed_best:
                    self.state.save_to_json(str(staged / "trainer_state.json"))
        if main:
            best = self.state.best_model_checkpoint
            rotate(run_dir, self.args.save_total_limit, {final} | ({Path(best)} if best else set()))
