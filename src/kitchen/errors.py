"""Errors kitchen raises on purpose. Each names what is wrong and how to fix it."""

from __future__ import annotations


class KitchenError(Exception):
    """Base class. The CLI prints ``str(err)`` on one line and exits with ``exit_code``."""

    exit_code = 1


class UsageError(KitchenError):
    """Bad input from the user: config, CLI argument, recipe or adapter name."""

    exit_code = 2


class ConfigError(UsageError):
    """A config value failed validation. ``field`` is the dotted path of the bad value."""

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        super().__init__(f"config field '{field}': {message}")


class DataError(UsageError):
    """A dataset row is malformed. Names the file, the row (0-based) and the field."""

    def __init__(self, source: str, row: int | None, field: str | None, message: str) -> None:
        self.source, self.row, self.field = source, row, field
        where = source
        if row is not None:
            where += f" row {row}"
        if field is not None:
            where += f" field '{field}'"
        super().__init__(f"{where}: {message}")


class WorkflowError(KitchenError):
    """The workflow definition is invalid (raised when the IR is built)."""

    exit_code = 2


class StageError(KitchenError):
    """A stage raised. ``path`` is the stage's runtime path, e.g. ``epoch[2]/batch[17]/step``."""

    def __init__(self, path: str, cause: BaseException) -> None:
        self.path = path
        self.cause = cause
        super().__init__(f"stage {path} failed: {type(cause).__name__}: {cause}")


class AdapterUnavailable(UsageError):
    """An adapter's extra is not installed; the message says which ``pip install`` fixes it."""


class CheckpointError(KitchenError):
    """A checkpoint is missing, incomplete or inconsistent with the workflow."""

    exit_code = 3
