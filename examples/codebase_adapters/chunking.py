"""Chunk a Python source tree into training examples.

Each top-level function and class (and each method of a class too long for one chunk)
becomes a prompt/completion row: the prompt is the file path plus the definition's header
(decorators, signature and docstring), the completion is its body. Module headers (imports,
constants) become plain text rows. Chunks longer than ``max_chars`` are cut at line
boundaries.

**Parser.** With ``tree-sitter`` and ``tree-sitter-python`` installed, definitions are found
with the tree-sitter grammar (it also parses files that are not valid Python for the running
interpreter, and recovers from syntax errors). Without them, the documented fallback is the
standard library's ``ast`` (``lineno``/``end_lineno`` of each definition): exact for valid
Python, and a file that does not parse becomes plain text chunks. ``parser="auto"`` picks
tree-sitter when it imports.
"""

from __future__ import annotations

import ast
import hashlib
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

SKIP_DIRS = {".git", "__pycache__", ".venv", "venv", "build", "dist", ".mypy_cache"}


@dataclass(frozen=True)
class Span:
    kind: str  # "function" | "class" | "method"
    name: str
    start: int  # 0-based line, inclusive
    end: int  # 0-based line, exclusive
    body_start: int  # first line of the body after the header/docstring


@dataclass(frozen=True)
class Chunk:
    project: str
    path: str
    kind: str
    name: str
    start_line: int
    prompt: str
    completion: str

    @property
    def id(self) -> str:
        return hashlib.sha256(f"{self.path}:{self.name}:{self.start_line}".encode()).hexdigest()[
            :12
        ]

    def row(self) -> dict[str, Any]:
        """A prompt/completion row (one format for every chunk: dataset stores expect one
        schema per file). Module-level and unparsed text gets the file path as prompt."""
        meta = {k: v for k, v in asdict(self).items() if k not in ("prompt", "completion")}
        prompt = self.prompt or f"# {self.project}/{self.path}\n"
        return {"prompt": prompt, "completion": self.completion, "meta": meta}


def tree_sitter_available() -> bool:
    try:
        import tree_sitter  # noqa: F401
        import tree_sitter_python  # noqa: F401
    except ImportError:
        return False
    return True


# -- span finders -----------------------------------------------------------------------


def _ast_spans(source: str) -> list[Span] | None:
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return None
    spans: list[Span] = []

    def body_start(node: Any) -> int:
        first = node.body[0]
        if (
            isinstance(first, ast.Expr)
            and isinstance(first.value, ast.Constant)
            and isinstance(first.value.value, str)
            and len(node.body) > 1
        ):
            return node.body[1].lineno - 1
        return first.lineno - 1

    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            start = min([node.lineno, *(d.lineno for d in node.decorator_list)]) - 1
            kind = "class" if isinstance(node, ast.ClassDef) else "function"
            spans.append(
                Span(kind, node.name, start, node.end_lineno or start + 1, body_start(node))
            )
            if isinstance(node, ast.ClassDef):
                for sub in node.body:
                    if isinstance(sub, ast.FunctionDef | ast.AsyncFunctionDef):
                        s0 = min([sub.lineno, *(d.lineno for d in sub.decorator_list)]) - 1
                        spans.append(
                            Span(
                                "method",
                                f"{node.name}.{sub.name}",
                                s0,
                                sub.end_lineno or s0 + 1,
                                body_start(sub),
                            )
                        )
    return spans


def _ts_spans(source: str) -> list[Span]:
    import tree_sitter_python
    from tree_sitter import Language, Parser

    parser = Parser(Language(tree_sitter_python.language()))
    tree = parser.parse(source.encode("utf-8"))
    spans: list[Span] = []

    def definition(node: Any) -> Any:
        if node.type == "decorated_definition":
            return node.child_by_field_name("definition")
        return node

    def body_start(defn: Any) -> int:
        body = defn.child_by_field_name("body")
        stmts = [c for c in body.named_children if c.type != "comment"]
        if (
            len(stmts) > 1
            and stmts[0].type == "expression_statement"
            and stmts[0].named_children
            and stmts[0].named_children[0].type == "string"
        ):
            return stmts[1].start_point[0]
        return stmts[0].start_point[0] if stmts else body.start_point[0]

    def name_of(defn: Any) -> str:
        n = defn.child_by_field_name("name")
        return n.text.decode("utf-8") if n is not None else "?"

    for node in tree.root_node.named_children:
        defn = definition(node)
        if defn is None or defn.type not in ("function_definition", "class_definition"):
            continue
        kind = "class" if defn.type == "class_definition" else "function"
        end = node.end_point[0] + (1 if node.end_point[1] > 0 else 0)
        spans.append(Span(kind, name_of(defn), node.start_point[0], end, body_start(defn)))
        if kind == "class":
            for sub in defn.child_by_field_name("body").named_children:
                sd = definition(sub)
                if sd is not None and sd.type == "function_definition":
                    e2 = sub.end_point[0] + (1 if sub.end_point[1] > 0 else 0)
                    spans.append(
                        Span(
                            "method",
                            f"{name_of(defn)}.{name_of(sd)}",
                            sub.start_point[0],
                            e2,
                            body_start(sd),
                        )
                    )
    return spans


# -- chunking ---------------------------------------------------------------------------


def _cut(text: str, max_chars: int) -> list[str]:
    out: list[str] = []
    cur = ""
    for line in text.splitlines(keepends=True):
        if cur and len(cur) + len(line) > max_chars:
            out.append(cur)
            cur = ""
        cur += line[:max_chars]
    if cur.strip():
        out.append(cur)
    return out


def chunk_file(
    project: str, rel: str, source: str, *, parser: str = "auto", max_chars: int = 1200
) -> list[Chunk]:
    """Chunks of one file. ``parser``: "auto" | "tree-sitter" | "ast"."""
    use_ts = parser == "tree-sitter" or (parser == "auto" and tree_sitter_available())
    spans = _ts_spans(source) if use_ts else _ast_spans(source)
    lines = source.splitlines(keepends=True)
    chunks: list[Chunk] = []
    if spans is None:  # ast fallback on a file that does not parse: plain text
        for i, part in enumerate(_cut(source, max_chars)):
            chunks.append(Chunk(project, rel, "text", f"part{i}", 0, "", part))
        return chunks
    covered = [False] * len(lines)
    tops = [s for s in spans if s.kind != "method"]
    for s in spans:
        text = "".join(lines[s.start : s.end])
        if s.kind == "class" and len(text) > max_chars:
            # a long class: its header alone; the methods come as their own chunks
            methods = [m for m in spans if m.kind == "method" and s.start <= m.start < s.end]
            first = methods[0].start if methods else s.end
            header, body = (
                "".join(lines[s.start : s.body_start]),
                "".join(lines[s.body_start : first]),
            )
        elif s.kind == "method" and not any(
            t.kind == "class" and len("".join(lines[t.start : t.end])) > max_chars
            for t in tops
            if t.start <= s.start < t.end
        ):
            continue  # the whole class is one chunk already
        else:
            header, body = (
                "".join(lines[s.start : s.body_start]),
                "".join(lines[s.body_start : s.end]),
            )
        for k in range(s.start, min(s.end, len(lines))):
            covered[k] = True
        prompt = f"# {project}/{rel}\n{header}"
        if not body.strip():  # e.g. a long class whose body is all methods: keep its header
            chunks.append(Chunk(project, rel, s.kind, s.name, s.start + 1, "", prompt))
            continue
        for j, part in enumerate(_cut(body, max_chars) or [""]):
            if not part.strip():
                continue
            name = s.name if j == 0 else f"{s.name}#{j}"
            chunks.append(Chunk(project, rel, s.kind, name, s.start + 1, prompt, part))
    rest = "".join(line for line, c in zip(lines, covered, strict=True) if not c)
    if rest.strip():
        for i, part in enumerate(_cut(rest, max_chars)):
            chunks.append(Chunk(project, rel, "module", f"module#{i}", 1, "", part))
    return chunks


def iter_sources(root: Path, pattern: str = "*.py") -> Iterator[Path]:
    for path in sorted(root.rglob(pattern)):
        if path.is_file() and not (set(path.relative_to(root).parts[:-1]) & SKIP_DIRS):
            yield path


def chunk_tree(
    root: str | Path, project: str | None = None, *, parser: str = "auto", max_chars: int = 1200
) -> list[Chunk]:
    """All chunks of the ``*.py`` files under ``root`` (sorted paths, deterministic)."""
    root = Path(root)
    name = project or root.name
    out: list[Chunk] = []
    for path in iter_sources(root):
        try:
            source = path.read_text("utf-8")
        except UnicodeDecodeError:
            continue
        rel = path.relative_to(root).as_posix()
        out.extend(chunk_file(name, rel, source, parser=parser, max_chars=max_chars))
    return out
