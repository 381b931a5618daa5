"""`training_args.report_to` edits shared by the tracking integrations (MLflow, W&B)."""

from __future__ import annotations

import logging

logger = logging.getLogger(__name__)


def report_to_list(report_to) -> list[str] | None:
    """training_args.report_to as a list; None when unset."""
    if report_to is None:
        return None
    return [report_to] if isinstance(report_to, str) else list(report_to)


def add_reporter(args: dict, name: str, what: str) -> dict:
    """Add integration `name` to args["report_to"] (in place, and returned) unless the user chose 'none' (warned
    about: the integration is configured but would log nothing) or 'all' (which includes it)."""
    report_to = report_to_list(args.get("report_to"))
    if report_to in (["none"], []):
        logger.warning("%s is configured but training_args.report_to is 'none': nothing will be logged to it", what)
    elif report_to is None or "all" not in report_to:
        args["report_to"] = sorted(set(report_to or []) | {name})
    return args


def add_run_name(args: dict, run_name: str | None) -> dict:
    """The integration's run name, unless training_args already names the run."""
    if run_name and not args.get("run_name"):
        args["run_name"] = run_name
    return args
