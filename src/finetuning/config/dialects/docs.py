"""Keep the key tables of docs/dialects/NAME.md equal to the dialects' own key tables (so the docs cannot drift).

`python -m finetuning.config.dialects.docs` rewrites the table between the markers of each dialect's page; the tests
compare them (tests/config/dialects).
"""

from __future__ import annotations

import sys
from pathlib import Path

from finetuning.config.dialects import DIALECTS, key_table

BEGIN = "<!-- key table: generated from the dialect's key table by `python -m finetuning.config.dialects.docs` -->"
END = "<!-- end of key table -->"
DOCS = Path(__file__).resolve().parents[4] / "docs" / "dialects"


def with_table(page: str, name: str) -> str:
    """The page with its generated table replaced by the dialect's current one (ValueError without the markers)."""
    head, begin, rest = page.partition(BEGIN)
    _, end, tail = rest.partition(END)
    if not (begin and end):
        raise ValueError(f"docs/dialects/{name}.md: the key table markers are missing")
    return f"{head}{BEGIN}\n{key_table(name)}\n{END}{tail}"


def main() -> int:
    for name, dialect in DIALECTS.items():
        page = DOCS / f"{name}.md"
        if dialect.keys and page.is_file():
            page.write_text(with_table(page.read_text(encoding="utf-8"), name), encoding="utf-8")
            print(f"updated {page}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
