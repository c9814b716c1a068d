"""ast-grep actions: the normalised schema, parsing (rule YAML or ``sg run`` CLI),
validation, and offline application with ``ast-grep-py``.

The normalised action is an ast-grep rewrite rule::

    id: rename-variable
    language: python
    rule:
      pattern: tmp
    fix: total

or, equivalently, the CLI form ``sg run -p 'tmp' -r 'total' -l python``. ``$NAME`` in the
pattern matches one node and ``$$$NAME`` any number of them; the fix may reuse them.

:func:`parse_action` accepts either form (or the dict) and raises :class:`ActionError` with
the reason (``invalid YAML``, ``unknown language``, a missing field); :func:`apply_action`
rewrites code with ast-grep (``SgRoot(...).root().find_all(pattern=...)`` and
``commit_edits``) and raises :class:`ActionError` when the rule matches nothing or the
result no longer parses. Nothing here searches strings: matching is on the syntax tree.
"""

from __future__ import annotations

import difflib
import re
import shlex
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import yaml

#: ast-grep-py's built-in languages (an unknown name would abort inside ast-grep, so it
#: is refused before ast-grep sees it).
LANGUAGES = frozenset(
    {
        "bash", "c", "cpp", "csharp", "css", "elixir", "go", "haskell", "html", "java",
        "javascript", "json", "kotlin", "lua", "php", "python", "ruby", "rust", "scala",
        "swift", "tsx", "typescript", "yaml",
    }
)  # fmt: skip
FIELDS = ("id", "language", "rule.pattern", "fix")
_METAVAR = re.compile(r"\$\$\$([A-Z_][A-Z0-9_]*)|\$([A-Z_][A-Z0-9_]*)")


class ActionError(ValueError):
    """An action that is not a valid ast-grep rule, or that does not apply."""


@dataclass(frozen=True)
class AstGrepAction:
    id: str
    language: str
    pattern: str
    fix: str

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "language": self.language,
            "rule": {"pattern": self.pattern},
            "fix": self.fix,
        }

    def fields(self) -> dict[str, str]:
        """The flat fields ``S_field`` compares."""
        return {
            "id": self.id,
            "language": self.language,
            "rule.pattern": self.pattern,
            "fix": self.fix,
        }

    def rule_yaml(self) -> str:
        """The canonical rule YAML (the training target)."""
        return yaml.safe_dump(
            self.as_dict(), sort_keys=False, default_flow_style=False, allow_unicode=True
        )

    def cli(self) -> str:
        """The equivalent ``sg run`` command line."""
        return (
            f"sg run -p {shlex.quote(self.pattern)} -r {shlex.quote(self.fix)} -l {self.language}"
        )


def _from_cli(text: str) -> dict[str, Any]:
    try:
        argv = shlex.split(text)
    except ValueError as exc:
        raise ActionError(f"invalid sg command line: {exc}") from None
    if argv[:2] not in (["sg", "run"], ["ast-grep", "run"]):
        raise ActionError("a CLI action must start with `sg run`")
    opts: dict[str, str] = {}
    names = {"-p": "pattern", "--pattern": "pattern", "-r": "fix", "--rewrite": "fix",
             "-l": "language", "--lang": "language"}  # fmt: skip
    it = iter(argv[2:])
    for arg in it:
        if arg not in names:
            raise ActionError(f"unsupported sg run argument {arg!r}")
        value = next(it, None)
        if value is None:
            raise ActionError(f"{arg} needs a value")
        opts[names[arg]] = value
    return {
        "id": "cli",
        "language": opts.get("language"),
        "rule": {"pattern": opts.get("pattern")},
        "fix": opts.get("fix"),
    }


def parse_action(action: Any) -> AstGrepAction:
    """The normalised action from a dict, a rule YAML string or an ``sg run`` command."""
    if isinstance(action, AstGrepAction):
        return action
    obj: Any = action
    if isinstance(action, str):
        text = action.strip()
        if text.startswith(("sg ", "ast-grep ")):
            obj = _from_cli(text)
        else:
            try:
                obj = yaml.safe_load(text)
            except yaml.YAMLError as exc:
                first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
                raise ActionError(f"invalid YAML: {first}") from None
    if not isinstance(obj, Mapping):
        raise ActionError("not a rule: expected a mapping with id, language, rule, fix")
    for key in ("id", "language", "rule", "fix"):
        if key not in obj or obj[key] is None:
            raise ActionError(f"missing field {key!r}")
    extra = sorted(set(obj) - {"id", "language", "rule", "fix"})
    if extra:
        raise ActionError(f"unknown fields {extra}")
    rule = obj["rule"]
    if not isinstance(rule, Mapping) or not isinstance(rule.get("pattern"), str):
        raise ActionError("rule must be a mapping with a string 'pattern'")
    if set(rule) != {"pattern"}:
        raise ActionError(f"rule supports only 'pattern', got {sorted(rule)}")
    if not rule["pattern"].strip():
        raise ActionError("rule.pattern is empty")
    language = str(obj["language"]).lower()
    if language not in LANGUAGES:
        raise ActionError(f"unknown language {obj['language']!r}")
    if not isinstance(obj["fix"], str):
        raise ActionError("fix must be a string")
    return AstGrepAction(str(obj["id"]), language, rule["pattern"], obj["fix"])


def _expand(fix: str, match: Any, source: str) -> str:
    """The fix with ``$A`` / ``$$$ARGS`` replaced by the text they matched."""

    def sub(m: re.Match[str]) -> str:
        if m.group(1):  # $$$NAME: the source span of all the nodes it matched
            nodes = match.get_multiple_matches(m.group(1))
            if not nodes:
                return ""
            start = nodes[0].range().start.index
            end = nodes[-1].range().end.index
            return source.encode("utf-8")[start:end].decode("utf-8")
        node = match.get_match(m.group(2))
        if node is None:
            raise ActionError(f"fix uses ${m.group(2)}, which the pattern does not bind")
        return str(node.text())

    return _METAVAR.sub(sub, fix)


def apply_action(code: str, action: Any) -> str:
    """Rewrite ``code`` with the rule offline (ast-grep-py); ActionError with the reason."""
    from ast_grep_py import SgRoot

    a = action if isinstance(action, AstGrepAction) else parse_action(action)
    root = SgRoot(code, a.language).root()
    try:
        matches = root.find_all(pattern=a.pattern)
    except Exception as exc:  # ast-grep: a pattern it cannot build a matcher for
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ActionError(f"rule.pattern is not a valid {a.language} pattern: {reason}") from None
    if not matches:
        raise ActionError("rule matches nothing in the code")
    edits = [m.replace(_expand(a.fix, m, code)) for m in matches]
    out = str(root.commit_edits(edits))
    if out == code:
        raise ActionError("rule matches but the fix changes nothing")
    if a.language == "python":
        try:
            compile(out, "<edited>", "exec")
        except SyntaxError as exc:
            raise ActionError(f"the edited code does not parse: {exc.msg}") from None
    return out


def check_action(text: Any, code: str | None = None) -> str | None:
    """``None`` when ``text`` is a valid action (and applies to ``code``, if given), else
    the reason it is not."""
    try:
        a = parse_action(text)
        if code is not None:
            apply_action(code, a)
    except ActionError as exc:
        return str(exc)
    return None


def field_score(pred: AstGrepAction, ref: AstGrepAction) -> float:
    """``S_field``: the share of normalised fields (id, language, pattern, fix) that match."""
    p, r = pred.fields(), ref.fields()
    return sum(p[k] == r[k] for k in FIELDS) / len(FIELDS)


def string_score(pred: AstGrepAction, ref: AstGrepAction) -> float:
    """``S_str``: difflib ratio of the canonical rule YAML strings."""
    return difflib.SequenceMatcher(None, pred.rule_yaml(), ref.rule_yaml(), autojunk=False).ratio()
