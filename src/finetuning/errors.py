"""The one exception family for user errors: printed as a list of problems (no traceback), exit code 2."""

from __future__ import annotations

from collections.abc import Iterable


class UserError(Exception):
    """Wrong input from the user (config, data, paths, combinations); `problems` holds one line each."""

    def __init__(self, problems: str | list[str]):
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        super().__init__("\n".join(self.problems))


USER_ERROR_EXIT = 2

# How alike a word and a choice must be (difflib's ratio) to suggest the choice: "leraning_rate" → "learning_rate"
# but not "lr" → "seed".
DID_YOU_MEAN_CUTOFF = 0.6


def closest(word: str, choices: Iterable[str], cutoff: float = DID_YOU_MEAN_CUTOFF) -> str | None:
    """The choice most like `word`, or None when none is alike enough."""
    import difflib

    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=cutoff)
    return close[0] if close else None


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """`; did you mean 'x'?` for the closest choice, or "" (to end an `unknown ...` problem line)."""
    match = closest(word, choices)
    return f"; did you mean '{match}'?" if match is not None else ""


def did_you_mean_or_choices(value, choices: Iterable[str]) -> str:
    """`; did you mean 'x'?` for a value like one of a short list of choices (case aside), else the whole list."""
    choices = list(choices)
    close = did_you_mean(value.lower(), choices) if isinstance(value, str) else ""
    return close or f"; expected one of {', '.join(choices)}"


def user_error_text(error: UserError) -> str:
    """The problems as the command line prints them (the worker returns the same text as a job's error)."""
    problems = error.problems
    head = f"error: {len(problems)} problem(s) found:" if len(problems) > 1 else "error:"
    return "\n".join([head, *(f"  {problem}" for problem in problems)])


def report_user_error(error: UserError) -> int:
    """Print the problems (no traceback) to stderr; return the exit code for user errors."""
    import sys

    print(user_error_text(error), file=sys.stderr)
    return USER_ERROR_EXIT
