"""Rows as they are read, gathered into an Arrow dataset (data/inputs.py `read_input`): only the columns the method
keeps, each row's line in its file, exact duplicates dropped when asked; and, for a problem found after tokenising,
the file and line each example came from."""

from __future__ import annotations

import hashlib
import json
from typing import TYPE_CHECKING

from .readers import read_file, row_label

if TYPE_CHECKING:
    from datasets import Dataset

SOURCE_LINE = "source_line"  # each read row's line in its file (row index for sources without lines)


class ArrowRows:
    """Rows gathered into Arrow tables of BATCH_ROWS rows as they come (only `columns` of each, and its line), then
    one dataset. With `deduplicate`, a row whose columns equal an earlier row's is dropped (and counted): a 128-bit
    digest per distinct row is all that is kept."""

    BATCH_ROWS = 2000

    def __init__(self, columns: tuple[str, ...], deduplicate: bool = False):
        self.columns, self.pending, self.lines, self.tables = columns, [], [], []
        self.seen: set[bytes] | None = set() if deduplicate else None
        self.duplicates = 0

    def add(self, row: dict, line: int = 0) -> None:
        if self.seen is not None:
            digest = _content_digest([row.get(column) for column in self.columns])
            if digest in self.seen:
                self.duplicates += 1
                return
            self.seen.add(digest)
        self.pending.append(row)
        self.lines.append(line)
        if len(self.pending) >= self.BATCH_ROWS:
            self._flush()

    def _flush(self) -> None:
        import pyarrow as pa

        if self.pending:
            columns = {column: [row.get(column) for row in self.pending] for column in self.columns}
            columns[SOURCE_LINE] = pa.array(self.lines, pa.int64())
            self.tables.append(pa.Table.from_pydict(columns))
            self.pending, self.lines = [], []

    def dataset(self, origin: dict | None = None) -> Dataset:
        """The rows so far as one in-memory dataset; a column all null in one batch takes the type of the others.
        `origin` (where the rows come from, `origin_label`) is kept in the dataset's description, so that a later
        problem with a tokenized example can name its file and line (`example_places`)."""
        import pyarrow as pa
        from datasets import Dataset, DatasetInfo
        from datasets.table import InMemoryTable

        self._flush()
        info = DatasetInfo(description=json.dumps(origin)) if origin else None
        if not self.tables:
            return Dataset.from_dict({column: [] for column in (*self.columns, SOURCE_LINE)}, info=info)
        return Dataset(InMemoryTable(pa.concat_tables(self.tables, promote_options="permissive")), info=info)


def _content_digest(values: list) -> bytes:
    return hashlib.blake2b(json.dumps(values, sort_keys=True, default=str).encode(), digest_size=16).digest()


def origin_label(entry) -> dict:
    """How problems name an entry's rows: its label (readers) and whether they are numbered by line."""
    return {"label": row_label(entry), "line_based": read_file(entry).line_based}


def example_places(source: Dataset | None, rows: list[int]) -> list[str]:
    """`path:line` (`path: row N`) of rows of a dataset `read_input` returned (or of the same rows after a
    one-to-one map such as tokenising), where it has that origin; else None for each."""
    if source is None or not rows or not source.info.description or SOURCE_LINE not in source.column_names:
        return [None] * len(rows)
    origin = json.loads(source.info.description)
    lines = source.select(rows)[SOURCE_LINE]
    return [f"{origin['label']}:{n}" if origin["line_based"] else f"{origin['label']}: row {n}" for n in lines]
