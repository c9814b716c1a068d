"""Generate: instruction/response pairs from templates and from a teacher model.

An *extractor* turns a document into items with named fields:

==================== ==============================================================
``python_functions`` functions and methods with a docstring: ``name``, ``qualname``,
                     ``signature``, ``docstring``, ``source``, ``body`` (no docstring)
``markdown_sections`` ``heading`` and ``body`` of each ``#``/``##``/``###`` section
``markdown_code``    each fenced python block: ``code`` and its ``heading``
``file``             the whole document: ``text``
==================== ==============================================================

Every item also has ``path``, ``source_name`` and ``lang``. A :class:`Template` formats an
instruction and a response from those fields; a :class:`TeacherTask` formats the
instruction and a *strict* prompt, and the response is what the teacher
``SamplingClient`` generates for that prompt. Placeholders are checked when the template
is built, so a typo fails before any work is done.

Each sample carries its provenance::

    {"id": "...", "instruction": "...", "response": "...", "lang": "python",
     "provenance": {"source": "code", "source_file": "minicrate/app.py",
                    "source_id": "code/minicrate/app.py", "source_sha256": "...",
                    "item": "Router.add", "transformation": "template:implement_function",
                    "generator": {"kind": "template"}}}

For a teacher, ``generator`` is ``{"kind": "teacher", "port": ..., "model": ...,
"sampling": {...}, "prompt_sha256": ...}``. Teacher requests are all submitted before
any is awaited, so a remote or batched teacher works on them concurrently.
"""

from __future__ import annotations

import ast
import dataclasses
import re
import string
from collections.abc import Callable, Iterator
from typing import Any

from kitchen.context import Context
from kitchen.data.stages.dedup import kept_documents
from kitchen.data.stages.manifest import (
    DataStage,
    json_hash,
    sha256_text,
    state_path,
    write_manifest,
    write_records,
)
from kitchen.errors import UsageError
from kitchen.ports.types import ModelInput, SamplingParams

Item = dict[str, str]
Extractor = Callable[[dict[str, Any]], Iterator[Item]]

COMMON_FIELDS = ("path", "source_name", "lang")


def _python_functions(doc: dict[str, Any]) -> Iterator[Item]:
    if doc.get("lang") != "python":
        return
    text = doc["text"]
    try:
        tree = ast.parse(text)
    except SyntaxError:
        return
    lines = text.splitlines(keepends=True)

    def visit(nodes: list[ast.stmt], prefix: str) -> Iterator[Item]:
        for node in nodes:
            if isinstance(node, ast.ClassDef):
                yield from visit(node.body, f"{prefix}{node.name}.")
            elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                doc_str = ast.get_docstring(node)
                if not doc_str or node.end_lineno is None:
                    continue
                start = min([node.lineno] + [d.lineno for d in node.decorator_list])
                src_lines = lines[start - 1 : node.end_lineno]
                indent = len(src_lines[0]) - len(src_lines[0].lstrip())
                source = "".join(ln[indent:] if ln[:indent].isspace() else ln for ln in src_lines)
                first = node.body[0]
                body_lines = lines[(first.end_lineno or first.lineno) : node.end_lineno]
                body = "".join(ln[indent:] if ln[:indent].isspace() else ln for ln in body_lines)
                sig_end = node.body[0].lineno - 1
                header = "".join(lines[node.lineno - 1 : sig_end]).strip()
                signature = header[: header.rfind(":")] if ":" in header else header
                yield {
                    "name": node.name,
                    "qualname": prefix + node.name,
                    "signature": re.sub(r"\s+", " ", signature),
                    "docstring": doc_str.split("\n\n")[0].strip(),
                    "source": source.rstrip() + "\n",
                    "body": body.rstrip() + "\n",
                }

    yield from visit(tree.body, "")


_HEADING = re.compile(r"^(#{1,3})\s+(.+?)\s*#*\s*$", re.MULTILINE)


def _markdown_sections(doc: dict[str, Any]) -> Iterator[Item]:
    if doc.get("lang") != "markdown":
        return
    text = doc["text"]
    heads = list(_HEADING.finditer(text))
    for i, m in enumerate(heads):
        end = heads[i + 1].start() if i + 1 < len(heads) else len(text)
        body = text[m.end() : end].strip()
        if body:
            yield {"heading": m.group(2), "body": body}


_FENCE = re.compile(r"^```(?:python|py)[ \t]*\n(.*?)^```", re.MULTILINE | re.DOTALL)


def _markdown_code(doc: dict[str, Any]) -> Iterator[Item]:
    """Python code blocks of a markdown document, with the heading they sit under."""
    if doc.get("lang") != "markdown":
        return
    text = doc["text"]
    heads = [(m.start(), m.group(2)) for m in _HEADING.finditer(text)]
    for m in _FENCE.finditer(text):
        heading = next((h for pos, h in reversed(heads) if pos < m.start()), "")
        code = m.group(1).rstrip() + "\n"
        if code.strip():
            yield {"heading": heading, "code": code, "name": f"{heading}#{m.start()}"}


def _file(doc: dict[str, Any]) -> Iterator[Item]:
    yield {"text": doc["text"]}


EXTRACTORS: dict[str, tuple[Extractor, tuple[str, ...]]] = {
    "python_functions": (
        _python_functions,
        ("name", "qualname", "signature", "docstring", "source", "body"),
    ),
    "markdown_sections": (_markdown_sections, ("heading", "body")),
    "markdown_code": (_markdown_code, ("heading", "code", "name")),
    "file": (_file, ("text",)),
}


def register_extractor(name: str, fn: Extractor, fields: tuple[str, ...]) -> None:
    """Add an extractor usable by templates and teacher tasks."""
    EXTRACTORS[name] = (fn, tuple(fields))


def _item_key(item: Item) -> str:
    return item.get("qualname") or item.get("name") or item.get("heading") or ""


def _check_placeholders(
    owner: str, extractor: str, extra: tuple[str, ...] = (), **templates: str
) -> set[str]:
    if extractor not in EXTRACTORS:
        raise UsageError(
            f"{owner}: unknown extractor {extractor!r}; known: {', '.join(sorted(EXTRACTORS))}"
        )
    allowed = set(EXTRACTORS[extractor][1]) | set(COMMON_FIELDS) | set(extra)
    used: set[str] = set()
    for what, tmpl in templates.items():
        try:
            names = {f for _, f, _, _ in string.Formatter().parse(tmpl) if f is not None}
        except ValueError as exc:
            raise UsageError(f"{owner}: {what} template is malformed: {exc}") from None
        bad = sorted(n for n in names if n not in allowed or not n)
        if bad:
            raise UsageError(
                f"{owner}: {what} template uses unknown field(s) {bad}; "
                f"extractor {extractor!r} provides {sorted(allowed)}"
            )
        used |= names
    return used


@dataclasses.dataclass(frozen=True)
class Template:
    """``instruction``/``response`` are ``str.format`` templates over the item's fields."""

    name: str
    extractor: str
    instruction: str
    response: str
    #: Language of the response (``python`` responses are checked by code gates).
    response_lang: str = "text"

    def __post_init__(self) -> None:
        _check_placeholders(
            f"template {self.name!r}",
            self.extractor,
            instruction=self.instruction,
            response=self.response,
        )


@dataclasses.dataclass(frozen=True)
class TeacherTask:
    """A question per item, answered by the teacher from a strict ``prompt`` template."""

    name: str
    extractor: str
    instruction: str
    prompt: str
    max_tokens: int = 64
    temperature: float = 0.0
    seed: int = 0
    response_lang: str = "text"
    #: At most this many items per run (None = all) - teachers are expensive.
    max_items: int | None = None

    def __post_init__(self) -> None:
        _check_placeholders(
            f"teacher task {self.name!r}", self.extractor, instruction=self.instruction
        )
        used = _check_placeholders(
            f"teacher task {self.name!r}", self.extractor, ("instruction",), prompt=self.prompt
        )
        if not used - {"instruction", "path", "source_name", "lang"}:
            raise UsageError(
                f"teacher task {self.name!r}: the prompt must show the teacher the item "
                "(use a field such as {source}, {body} or {text})"
            )


def _items(doc: dict[str, Any], extractor: str) -> Iterator[Item]:
    fn, _ = EXTRACTORS[extractor]
    for item in fn(doc):
        yield {
            "path": doc["path"],
            "source": doc["source"],
            "lang": doc.get("lang", "text"),
            **item,
        }


def _provenance(
    doc: dict[str, Any], item: Item, transformation: str, generator: dict[str, Any]
) -> dict[str, Any]:
    return {
        "source": doc["source"],
        "source_file": doc["path"],
        "source_id": doc["id"],
        "source_sha256": doc.get("sha256"),
        "item": _item_key(item),
        "transformation": transformation,
        "generator": generator,
    }


def _sample_id(prov: dict[str, Any]) -> str:
    return json_hash([prov["transformation"], prov["source_id"], prov["item"]])[:16]


@dataclasses.dataclass(kw_only=True)
class Generate(DataStage):
    """Pairs from ``templates`` and ``teacher`` tasks over the deduplicated documents.

    ``teacher_port`` names the SamplingClient (``ctx.ports.extra['teacher']`` or a port such
    as ``sampling``); a tokenizer port turns prompts into tokens and back. ``teacher_model``
    is recorded in provenance and in the cache key: change it when the teacher changes.
    """

    input: str = "deduped"
    output: str = "samples"
    templates: tuple[Template, ...] = ()
    teacher: tuple[TeacherTask, ...] = ()
    teacher_port: str = "teacher"
    teacher_model: str = ""

    kind = "generate"

    def __call__(self, ctx: Context) -> dict[str, Any]:
        if not self.templates and not self.teacher:
            raise UsageError("Generate needs at least one template or teacher task")
        src = state_path(ctx, self.input, "dedup manifest")
        docs = kept_documents(src)
        samples: list[dict[str, Any]] = []
        counts: dict[str, int] = {}
        for doc in docs:
            for t in self.templates:
                for item in _items(doc, t.extractor):
                    prov = _provenance(doc, item, f"template:{t.name}", {"kind": "template"})
                    samples.append(
                        {
                            "id": _sample_id(prov),
                            "instruction": t.instruction.format(**item).strip(),
                            "response": t.response.format(**item).strip()
                            + ("\n" if t.response_lang == "python" else ""),
                            "lang": t.response_lang,
                            "provenance": prov,
                        }
                    )
                    counts[prov["transformation"]] = counts.get(prov["transformation"], 0) + 1
        teacher_info: dict[str, Any] | None = None
        if self.teacher:
            teacher_info = self._teach(ctx, docs, samples, counts)
        samples.sort(key=lambda s: s["id"])
        out = self.dir()
        digest = write_records(out / "samples.jsonl", samples)
        path = out / "generate.json"
        write_manifest(
            path,
            "generate",
            {
                "samples": {"file": "samples.jsonl", "sha256": digest, "count": len(samples)},
                "by_transformation": dict(sorted(counts.items())),
                "templates": [dataclasses.asdict(t) for t in self.templates],
                "teacher": teacher_info,
            },
        )
        return {self.output: str(path)}

    def _teach(
        self,
        ctx: Context,
        docs: list[dict[str, Any]],
        samples: list[dict[str, Any]],
        counts: dict[str, int],
    ) -> dict[str, Any]:
        client = ctx.ports.require(self.teacher_port)
        tok = ctx.ports.require("tokenizer")
        model = self.teacher_model or str(
            getattr(client, "model_name", "") or type(client).__name__
        )
        pending = []
        for task in self.teacher:
            n = 0
            for doc in docs:
                for item in _items(doc, task.extractor):
                    if task.max_items is not None and n >= task.max_items:
                        break
                    n += 1
                    instruction = task.instruction.format(**item).strip()
                    prompt = task.prompt.format(instruction=instruction, **item)
                    params = SamplingParams(
                        max_tokens=task.max_tokens,
                        temperature=task.temperature,
                        seed=task.seed + n,
                    )
                    fut = client.sample(ModelInput.from_ints(tok.encode(prompt)), 1, params)
                    gen = {
                        "kind": "teacher",
                        "port": self.teacher_port,
                        "model": model,
                        "sampling": {
                            "max_tokens": params.max_tokens,
                            "temperature": params.temperature,
                            "seed": params.seed,
                        },
                        "prompt_sha256": sha256_text(prompt),
                    }
                    prov = _provenance(doc, item, f"teacher:{task.name}", gen)
                    pending.append((task, instruction, prov, fut))
        for task, instruction, prov, fut in pending:
            resp = fut.result()
            tokens = resp.sequences[0].tokens if resp.sequences else ()
            text = tok.decode(list(tokens), skip_special_tokens=True).strip()
            samples.append(
                {
                    "id": _sample_id(prov),
                    "instruction": instruction,
                    "response": text,
                    "lang": task.response_lang,
                    "provenance": prov,
                }
            )
            counts[prov["transformation"]] = counts.get(prov["transformation"], 0) + 1
        return {
            "port": self.teacher_port,
            "model": model,
            "tasks": [dataclasses.asdict(t) for t in self.teacher],
        }
