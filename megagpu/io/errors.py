"""The one error type of file input: it names the file, line and column."""

from __future__ import annotations


class InputError(ValueError):
    """A file is malformed; the message says where and what to do."""

    def __init__(self, path: str, message: str, line: int | None = None, column: int | None = None):
        where = (
            path
            + (f":{line}" if line is not None else "")
            + (f":{column}" if column is not None else "")
        )
        super().__init__(f"{where}: {message}")
        self.path, self.line, self.column = path, line, column
