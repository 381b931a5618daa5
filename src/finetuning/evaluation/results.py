"""The run summary's Evaluation section (tracking/report.py puts it in summary.md and the console table)."""

from __future__ import annotations


def _metrics_text(result: dict) -> str:
    if result["status"] != "ok":
        return f"failed: {result['error']}"
    parts = [
        f"{name} {value:.4g}" if isinstance(value, float) else f"{name} {value}"
        for name, value in result["metrics"].items()
    ]
    return ", ".join(parts) or "no metrics"


def evaluation_rows(results: dict) -> list[tuple[str, str]]:
    """(benchmark, its numbers or its error), one per benchmark, in the order they ran."""
    return [(label, _metrics_text(result)) for label, result in results["benchmarks"].items()]


def evaluation_markdown(results: dict, results_file: str) -> str:
    lines = ["| benchmark | type | result |", "|---|---|---|"]
    for label, result in results["benchmarks"].items():
        text = _metrics_text(result).replace("|", "\\|")
        lines.append(f"| {label} | {result['type']} | {text} |")
    note = f"All results: [{results_file}]({results_file})."
    if results["failed"]:
        note += f" {len(results['failed'])} benchmark(s) failed; the trained model is unaffected."
    return "\n".join(lines) + "\n\n" + note
