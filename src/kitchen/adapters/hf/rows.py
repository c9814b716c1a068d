"""Row schemas for the dataset formats kitchen trains on, and their validation.

Pure Python (no ``datasets`` import), so any store or stage can validate rows.

==================  ===========================================================  ============
format              fields                                                       detected by
==================  ===========================================================  ============
``chat``            ``messages``: non-empty list of ``{role, content}``; roles   ``messages``
                    in system/user/assistant; at least one assistant message
``preference``      ``prompt`` (string or message list), ``chosen``,             ``chosen`` +
                    ``rejected`` (non-empty, different strings)                  ``rejected``
``prompt_completion`` ``prompt``, ``completion``: non-empty strings              ``completion``
``text``            ``text``: non-empty string                                   ``text``
==================  ===========================================================  ============

Other columns (ids, metadata) are allowed and kept. Strings that are empty or only
whitespace count as empty. ``None`` counts as missing (Parquet nulls, empty CSV cells).
Each problem is reported as a :class:`RowProblem` with the offending field (dotted, e.g.
``messages[2].role``) and a message that says how to fix it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from kitchen.errors import DataError

RowFormat = Literal["chat", "prompt_completion", "text", "preference"]
FormatArg = Literal["auto", "chat", "prompt_completion", "text", "preference"]

FORMATS: tuple[RowFormat, ...] = ("chat", "prompt_completion", "text", "preference")
ROLES: tuple[str, ...] = ("system", "user", "assistant")

#: Required fields per format (in the order they are checked).
REQUIRED: dict[RowFormat, tuple[str, ...]] = {
    "chat": ("messages",),
    "prompt_completion": ("prompt", "completion"),
    "text": ("text",),
    "preference": ("prompt", "chosen", "rejected"),
}

_EXAMPLE: dict[RowFormat, str] = {
    "chat": '{"messages": [{"role": "user", "content": "Hi"}, '
    '{"role": "assistant", "content": "Hello!"}]}',
    "prompt_completion": '{"prompt": "2+2=", "completion": "4"}',
    "text": '{"text": "Some training text."}',
    "preference": '{"prompt": "Say hi", "chosen": "Hello!", "rejected": "Go away."}',
}


@dataclass(frozen=True)
class RowProblem:
    """Why a row is invalid: the field (``None`` for the whole row) and how to fix it."""

    field: str | None
    message: str

    def to_error(self, source: str, row: int | None) -> DataError:
        return DataError(source, row, self.field, self.message)


def detect_format(columns: Iterable[str], source: str = "<rows>") -> RowFormat:
    """The format implied by a dataset's columns (the union over its rows)."""
    cols = set(columns)
    if "messages" in cols:
        return "chat"
    if "chosen" in cols or "rejected" in cols:
        return "preference"
    if "completion" in cols:
        return "prompt_completion"
    if "text" in cols:
        return "text"
    raise DataError(
        source,
        None,
        None,
        f"cannot tell the dataset format from its columns {sorted(cols)}; rows need "
        "'messages' (chat), 'prompt'+'completion', 'text', or 'prompt'+'chosen'+'rejected' "
        "(preference), or pass format=... explicitly",
    )


_NUL = "contains a NUL byte (\\x00); is the file text? Remove the byte or the row"


def _is_blank(value: str) -> bool:
    return not value.strip()


def _check_str(row: Mapping[str, Any], name: str, fmt: RowFormat) -> RowProblem | None:
    if name not in row or row[name] is None:
        return RowProblem(name, f"missing; every {fmt} row needs it, e.g. {_EXAMPLE[fmt]}")
    value = row[name]
    if not isinstance(value, str):
        return RowProblem(
            name, f"must be a string, got {type(value).__name__} {_short(value)}; quote it"
        )
    if _is_blank(value):
        return RowProblem(name, "is empty; give it text or remove the row")
    if "\x00" in value:
        return RowProblem(name, _NUL)
    return None


def check_messages(
    messages: Any, name: str = "messages", *, need_assistant: bool = True
) -> RowProblem | None:
    """Validate a chat message list (``need_assistant=False`` for prompts)."""
    if messages is None:
        return RowProblem(name, f"missing; add a list of messages, e.g. {_EXAMPLE['chat']}")
    if not isinstance(messages, list | tuple):
        return RowProblem(
            name,
            f"must be a list of {{role, content}} objects, got {type(messages).__name__} "
            f"{_short(messages)}",
        )
    if not messages:
        return RowProblem(name, "is an empty list; add at least one user and one assistant message")
    for i, msg in enumerate(messages):
        where = f"{name}[{i}]"
        if not isinstance(msg, Mapping):
            return RowProblem(
                where, f"must be an object {{role, content}}, got {type(msg).__name__}"
            )
        role = msg.get("role")
        if role is None:
            return RowProblem(f"{where}.role", f"missing; use one of {', '.join(ROLES)}")
        if not isinstance(role, str):
            return RowProblem(f"{where}.role", f"must be a string, one of {', '.join(ROLES)}")
        if role not in ROLES:
            return RowProblem(
                f"{where}.role", f"unknown role {role!r}; use one of {', '.join(ROLES)}"
            )
        content = msg.get("content")
        if content is None:
            return RowProblem(f"{where}.content", "missing; every message needs text content")
        if not isinstance(content, str):
            return RowProblem(
                f"{where}.content",
                f"must be a string, got {type(content).__name__} {_short(content)}",
            )
        if _is_blank(content):
            return RowProblem(f"{where}.content", "is empty; give the message text or drop it")
        if "\x00" in content:
            return RowProblem(f"{where}.content", _NUL)
    if need_assistant and not any(m.get("role") == "assistant" for m in messages):
        return RowProblem(
            name, "has no assistant message; add the assistant reply the model should learn"
        )
    return None


def validate_row(row: Any, fmt: RowFormat) -> RowProblem | None:
    """The first problem with ``row`` as a ``fmt`` row, or ``None`` when it is valid."""
    if not isinstance(row, Mapping):
        return RowProblem(None, f"row must be a JSON object, got {type(row).__name__}")
    if fmt == "chat":
        return check_messages(row.get("messages"))
    if fmt == "text":
        return _check_str(row, "text", fmt)
    if fmt == "prompt_completion":
        return _check_str(row, "prompt", fmt) or _check_str(row, "completion", fmt)
    if fmt == "preference":
        prompt = row.get("prompt")
        if isinstance(prompt, list | tuple):
            problem = check_messages(prompt, "prompt", need_assistant=False)
        else:
            problem = _check_str(row, "prompt", fmt)
        problem = problem or _check_str(row, "chosen", fmt) or _check_str(row, "rejected", fmt)
        if problem is None and row["chosen"] == row["rejected"]:
            problem = RowProblem("rejected", "is identical to chosen; there is nothing to prefer")
        return problem
    raise ValueError(f"unknown row format {fmt!r}; use one of {', '.join(FORMATS)}")


def resolve_format(fmt: FormatArg, columns: Iterable[str], source: str) -> RowFormat:
    if fmt == "auto":
        return detect_format(columns, source)
    if fmt not in FORMATS:
        raise DataError(
            source, None, None, f"unknown format {fmt!r}; use auto or one of {', '.join(FORMATS)}"
        )
    return fmt


def _short(value: Any, limit: int = 40) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
