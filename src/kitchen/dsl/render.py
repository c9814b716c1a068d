"""Printing, serialising and diffing the IR: indented tree, JSON and mermaid."""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import json
from collections.abc import Callable
from typing import Any

from kitchen.dsl.nodes import Branch, Conditional, Loop, Node, Parallel, Stage, Workflow
from kitchen.dsl.refs import ref_of, resolve_ref
from kitchen.errors import WorkflowError

IR_VERSION = 1

# ---------------------------------------------------------------------------- JSON


def _jsonable(value: Any) -> Any:
    try:
        json.dumps(value)
        return value
    except (TypeError, ValueError):
        return repr(value)


def _instance_init(fn: Any) -> dict[str, Any] | None:
    """Constructor kwargs of a stage object, when it is a dataclass or pydantic model."""
    if isinstance(fn, type) or not callable(fn) or hasattr(fn, "__qualname__"):
        return None
    if dataclasses.is_dataclass(fn):
        return {f.name: _jsonable(getattr(fn, f.name)) for f in dataclasses.fields(fn) if f.init}
    dump = getattr(fn, "model_dump", None)
    if callable(dump):
        return {k: _jsonable(v) for k, v in dump().items()}
    return {}


def _over_json(over: Any) -> Any:
    if isinstance(over, int):
        return {"count": over}
    if isinstance(over, tuple):
        return {"items": [_jsonable(x) for x in over]}
    return {"fn": ref_of(over)}


def node_to_json(node: Node) -> dict[str, Any]:
    if isinstance(node, Stage):
        d: dict[str, Any] = {"kind": "stage", "name": node.name, "ref": ref_of(node.fn)}
        init = _instance_init(node.fn)
        if init is not None:
            d["init"] = init
        if node.params:
            d["params"] = {k: _jsonable(v) for k, v in node.params.items()}
        if node.outputs:
            d["outputs"] = list(node.outputs)
        if node.replay:
            d["replay"] = True
        if node.cache is not None:
            d["cache"] = {"inputs": list(node.cache.inputs), "version": node.cache.version}
        if node.rollback is not None and node.rollback is not getattr(node.fn, "rollback", None):
            d["rollback"] = ref_of(node.rollback)
        return d
    if isinstance(node, Loop):
        d = {"kind": "loop", "name": node.name, "over": _over_json(node.over)}
        if node.progress:
            d["progress"] = True
        d["body"] = [node_to_json(n) for n in node.body]
        return d
    if isinstance(node, Conditional):
        d = {"kind": "conditional", "name": node.name, "when": ref_of(node.predicate)}
        d["then"] = [node_to_json(n) for n in node.then]
        if node.orelse:
            d["else"] = [node_to_json(n) for n in node.orelse]
        return d
    return {
        "kind": "parallel",
        "name": node.name,
        "branches": [
            {
                "name": b.name,
                **({"outputs": list(b.outputs)} if b.outputs else {}),
                "body": [node_to_json(n) for n in b.body],
            }
            for b in node.branches
        ],
    }


def to_json(wf: Workflow) -> dict[str, Any]:
    """The workflow as a JSON-compatible dict (callables become import refs)."""
    out: dict[str, Any] = {"ir_version": IR_VERSION, "name": wf.name}
    if wf.description:
        out["description"] = wf.description
    out["body"] = [node_to_json(n) for n in wf.body]
    return out


def dumps(wf: Workflow, indent: int | None = 2) -> str:
    return json.dumps(to_json(wf), indent=indent)


Resolver = Callable[[str], Any]


def node_from_json(d: dict[str, Any], resolve: Resolver = resolve_ref) -> Node:
    kind = d.get("kind")
    name = d.get("name", "?")
    if kind == "stage":
        target = resolve(d["ref"])
        fn = target(**d["init"]) if "init" in d else target
        cache = None
        if "cache" in d:
            from kitchen.runner.cache import CachePolicy

            cache = CachePolicy(tuple(d["cache"]["inputs"]), d["cache"].get("version", ""))
        return Stage(
            name=name,
            fn=fn,
            params=dict(d.get("params", {})),
            outputs=tuple(d.get("outputs", ())),
            replay=bool(d.get("replay", False)),
            rollback=resolve(d["rollback"]) if "rollback" in d else getattr(fn, "rollback", None),
            cache=cache,
        )
    if kind == "loop":
        over_d = d["over"]
        over: Any
        if "count" in over_d:
            over = int(over_d["count"])
        elif "items" in over_d:
            over = tuple(over_d["items"])
        else:
            over = resolve(over_d["fn"])
        body = tuple(node_from_json(n, resolve) for n in d["body"])
        return Loop(name=name, over=over, body=body, progress=bool(d.get("progress", False)))
    if kind == "conditional":
        return Conditional(
            name=name,
            predicate=resolve(d["when"]),
            then=tuple(node_from_json(n, resolve) for n in d["then"]),
            orelse=tuple(node_from_json(n, resolve) for n in d.get("else", [])),
        )
    if kind == "parallel":
        return Parallel(
            name=name,
            branches=tuple(
                Branch(
                    name=b["name"],
                    body=tuple(node_from_json(n, resolve) for n in b["body"]),
                    outputs=tuple(b.get("outputs", ())),
                )
                for b in d["branches"]
            ),
        )
    raise WorkflowError(f"node {name!r}: unknown kind {kind!r} in workflow JSON")


def from_json(data: dict[str, Any] | str, resolve: Resolver = resolve_ref) -> Workflow:
    """Rebuild a workflow from :func:`to_json` output (validates like the DSL does)."""
    d = json.loads(data) if isinstance(data, str) else data
    version = d.get("ir_version", IR_VERSION)
    if version != IR_VERSION:
        raise WorkflowError(
            f"workflow JSON has ir_version {version}; this kitchen reads {IR_VERSION}"
        )
    return Workflow(
        name=d["name"],
        body=tuple(node_from_json(n, resolve) for n in d["body"]),
        description=d.get("description", ""),
    )


def fingerprint(wf: Workflow) -> str:
    """A short stable hash of the workflow's structure (stored in run manifests)."""
    return hashlib.sha256(dumps(wf, indent=None).encode()).hexdigest()[:16]


# ---------------------------------------------------------------------------- tree


def _over_text(over: Any) -> str:
    if isinstance(over, int):
        return f"×{over}"
    if isinstance(over, tuple):
        return f"over {len(over)} items"
    return f"over {ref_of(over)}"


def _tree_lines(seq: tuple[Node, ...], indent: str, out: list[str]) -> None:
    for node in seq:
        if isinstance(node, Stage):
            extra = []
            if node.params:
                extra.append(", ".join(f"{k}={v!r}" for k, v in node.params.items()))
            if node.outputs:
                extra.append("→ " + ", ".join(node.outputs))
            if node.replay:
                extra.append("replay")
            if node.cache is not None:
                extra.append("cached")
            suffix = f"  ({'; '.join(extra)})" if extra else ""
            out.append(f"{indent}stage {node.name}{suffix}")
        elif isinstance(node, Loop):
            out.append(f"{indent}loop {node.name} {_over_text(node.over)}")
            _tree_lines(node.body, indent + "  ", out)
        elif isinstance(node, Conditional):
            out.append(f"{indent}if {node.name} when {ref_of(node.predicate)}")
            _tree_lines(node.then, indent + "  ", out)
            if node.orelse:
                out.append(f"{indent}else")
                _tree_lines(node.orelse, indent + "  ", out)
        else:
            out.append(f"{indent}parallel {node.name}")
            for b in node.branches:
                outs = f"  (→ {', '.join(b.outputs)})" if b.outputs else ""
                out.append(f"{indent}  branch {b.name}{outs}")
                _tree_lines(b.body, indent + "    ", out)


def to_tree(wf: Workflow) -> str:
    """An indented, human-readable tree."""
    lines = [f"workflow {wf.name}"]
    _tree_lines(wf.body, "  ", lines)
    return "\n".join(lines)


def diff(a: Workflow, b: Workflow) -> str:
    """A unified diff of two workflows' trees (empty when structurally identical)."""
    return "\n".join(
        difflib.unified_diff(
            to_tree(a).splitlines(), to_tree(b).splitlines(), a.name, b.name, lineterm=""
        )
    )


# ---------------------------------------------------------------------------- mermaid


def to_mermaid(wf: Workflow) -> str:
    """A mermaid ``flowchart TD``: loops and parallels as subgraphs, conditionals as diamonds."""
    lines = ["flowchart TD"]
    counter = [0]

    def nid() -> str:
        counter[0] += 1
        return f"n{counter[0]}"

    def label(text: str) -> str:
        return text.replace('"', "'")

    def emit_seq(seq: tuple[Node, ...], indent: str) -> tuple[str | None, str | None]:
        first: str | None = None
        prev: str | None = None
        for node in seq:
            entry, exit_ = emit(node, indent)
            if prev is not None:
                lines.append(f"{indent}{prev} --> {entry}")
            first = first or entry
            prev = exit_
        return first, prev

    def emit(node: Node, indent: str) -> tuple[str, str]:
        if isinstance(node, Stage):
            i = nid()
            lines.append(f'{indent}{i}["{label(node.name)}"]')
            return i, i
        if isinstance(node, Loop):
            sg = nid()
            lines.append(
                f'{indent}subgraph {sg}["loop {label(node.name)} {label(_over_text(node.over))}"]'
            )
            emit_seq(node.body, indent + "  ")
            lines.append(f"{indent}end")
            return sg, sg
        if isinstance(node, Conditional):
            d, j = nid(), nid()
            lines.append(f'{indent}{d}{{"{label(node.name)}?"}}')
            lines.append(f"{indent}{j}(( ))")
            t_first, t_last = emit_seq(node.then, indent)
            lines.append(f"{indent}{d} -->|yes| {t_first}")
            lines.append(f"{indent}{t_last} --> {j}")
            if node.orelse:
                e_first, e_last = emit_seq(node.orelse, indent)
                lines.append(f"{indent}{d} -->|no| {e_first}")
                lines.append(f"{indent}{e_last} --> {j}")
            else:
                lines.append(f"{indent}{d} -->|no| {j}")
            return d, j
        fork, join = nid(), nid()
        lines.append(f'{indent}{fork}[/"parallel {label(node.name)}"/]')
        lines.append(f'{indent}{join}[\\"join {label(node.name)}"\\]')
        for b in node.branches:
            sg = nid()
            lines.append(f'{indent}subgraph {sg}["{label(b.name)}"]')
            emit_seq(b.body, indent + "  ")
            lines.append(f"{indent}end")
            lines.append(f"{indent}{fork} --> {sg}")
            lines.append(f"{indent}{sg} --> {join}")
        return fork, join

    emit_seq(wf.body, "  ")
    return "\n".join(lines)
