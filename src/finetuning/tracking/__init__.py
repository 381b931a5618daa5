"""Experiment tracking and run reporting: MLflow set-up (`mlflow`) and the end-of-run report (`report`).

Submodules are imported where used, never here: `cli` imports `tracking.mlflow` at start-up, and the report pulls in
transformers and matplotlib, which commands such as `validate` should not pay for.
"""
