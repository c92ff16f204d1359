"""One exception family; the CLI turns each into one line and an Argus exit code."""

from __future__ import annotations


class ArgusflowError(Exception):
    """Base of every error a user may see. `str(err)` is the one line we print."""

    exit_code = 2


class UsageError(ArgusflowError):
    """Bad command-line options."""


class FilterError(ArgusflowError):
    """A malformed filter expression: carries the 1-based column of the problem."""

    def __init__(self, column: int, message: str) -> None:
        self.column = column
        self.message = message
        super().__init__(f"filter: column {column}: {message}")


class CorruptInput(ArgusflowError):
    """Input bytes that are not what the format promises."""

    def __init__(self, source: str, offset: int, problem: str, records_before: int = 0) -> None:
        self.source = source
        self.offset = offset
        self.problem = problem
        self.records_before = records_before
        super().__init__(
            f"{source}: byte {offset}: {problem}; {records_before} records read before it"
        )


class NetworkError(ArgusflowError):
    """A remote peer could not be reached or broke the protocol."""
