"""`python -m finetuning.worker.push FOLDER REPO_ID`: upload a run's final model (or adapter) to the Hugging Face Hub.

Run by the worker after training, in a process of its own like the training (worker/child.py): the job's hf_token is
in that process's environment (HF_TOKEN, where huggingface_hub reads it) and nowhere else. A new repository is
created private: the worker trains for many users, and making a model public is its owner's decision. A failure
(offline, no permission, a bad repo id) is printed as a user error, exit code 2, for the job's error.
"""

from __future__ import annotations

import sys
from pathlib import Path

from ..errors import UserError, report_user_error


def push_folder(folder: Path, repo_id: str) -> str:
    """Upload `folder` as the latest commit of `repo_id` (created private when missing); returns its URL."""
    from huggingface_hub import HfApi

    api = HfApi()
    url = api.create_repo(repo_id, private=True, exist_ok=True)
    api.upload_folder(folder_path=str(folder), repo_id=repo_id, commit_message="fine-tuned with finetuning worker")
    return str(url)


def main(argv: list[str] | None = None) -> int:
    folder, repo_id = argv if argv is not None else sys.argv[1:]
    try:
        url = push_folder(Path(folder), repo_id)
    except Exception as error:  # noqa: BLE001 - each failure of the hub is the job's error, worded for its user
        problem = f"input.args.hub_model_id: pushing {folder} to {repo_id!r} failed: {type(error).__name__}: {error}"
        return report_user_error(UserError(f"{problem}; the model is saved; submit the same job again to retry"))
    print(f"pushed to {url}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
