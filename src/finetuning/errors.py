"""The one exception family for user errors: printed as a list of problems (no traceback), exit code 2."""

from __future__ import annotations


class UserError(Exception):
    """Wrong input from the user (config, data, paths, combinations); `problems` holds one line each."""

    def __init__(self, problems: str | list[str]):
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        super().__init__("\n".join(self.problems))


USER_ERROR_EXIT = 2


def report_user_error(error: UserError) -> int:
    """Print the problems (no traceback) to stderr; return the exit code for user errors."""
    import sys

    problems = error.problems
    print(f"error: {len(problems)} problem(s) found:" if len(problems) > 1 else "error:", file=sys.stderr)
    for problem in problems:
        print(f"  {problem}", file=sys.stderr)
    return USER_ERROR_EXIT
