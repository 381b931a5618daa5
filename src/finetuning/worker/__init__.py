"""The serverless fine-tuning worker (`finetuning worker`): runpod jobs become runs of this engine.

jobs.py validates a job, layout.py says where its run lives, child.py runs it in a process of its own with the
job's credentials in that process's environment only, progress.py carries its progress out, handler.py ties them
together for the runpod SDK. Nothing here imports runpod or torch at import time. docs/worker.md is the guide.
"""
