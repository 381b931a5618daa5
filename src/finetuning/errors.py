"""The one exception family for user errors: printed as a list of problems (no traceback), exit code 2."""

from __future__ import annotations


class UserError(Exception):
    """Wrong input from the user (config, data, paths, combinations); `problems` holds one line each."""

    def __init__(self, problems: str | list[str]):
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        super().__init__("\n".join(self.problems))
