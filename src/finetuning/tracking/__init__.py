"""Experiment tracking and run reporting: MLflow set-up (`mlflow`) and the end-of-run report (`report`).

Submodules are imported where used, never here: `cli` imports `tracking.mlflow` at start-up, and commands such as
`validate` should not pay for the report's imports. The loss curve (`loss_curve`) is SVG written by hand, not drawn
with a plotting library: matplotlib cost ~0.7 s of every run.
"""
