"""The workflow IR: an immutable tree of Stage, Loop, Conditional and Parallel nodes.

Nodes are frozen dataclasses. A :class:`Workflow` validates the whole tree when it is built:
names must be unique among siblings (so every node has a unique path), containers must not
be empty, and parallel branches must not declare the same output twice. Errors name the node.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, TypeAlias

from kitchen.errors import WorkflowError

_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_.\-]*$")

#: A loop runs over a count, a fixed sequence of items, or a function of the context that
#: returns either.
LoopSource: TypeAlias = int | tuple[Any, ...] | Callable[[Any], Any]


@dataclass(frozen=True)
class Stage:
    """A unit of work: ``fn(ctx, **params)``. A returned mapping is merged into ``ctx.state``.

    ``replay`` stages re-run when a resumed run fast-forwards past them (they rebuild
    transient objects such as datasets or model sessions). ``outputs`` documents the state
    keys the stage writes; inside a parallel branch only declared outputs are merged back.
    """

    name: str
    fn: Callable[..., Any]
    params: Mapping[str, Any] = field(default_factory=dict)
    outputs: tuple[str, ...] = ()
    replay: bool = False
    rollback: Callable[..., Any] | None = None
    #: A ``kitchen.runner.cache.CachePolicy`` makes the stage cacheable by content hash.
    cache: Any = None
    kind: Literal["stage"] = "stage"


@dataclass(frozen=True)
class Loop:
    """Runs ``body`` once per item of ``over``; iteration ``i`` has path ``name[i]``."""

    name: str
    over: LoopSource
    body: tuple[Node, ...]
    #: Show a progress bar when the length is known.
    progress: bool = False
    kind: Literal["loop"] = "loop"


@dataclass(frozen=True)
class Conditional:
    """Runs ``then`` when ``predicate(ctx)`` is truthy, else ``orelse``."""

    name: str
    predicate: Callable[[Any], Any]
    then: tuple[Node, ...]
    orelse: tuple[Node, ...] = ()
    kind: Literal["conditional"] = "conditional"


@dataclass(frozen=True)
class Branch:
    """One named branch of a parallel block; ``outputs`` are merged back into the parent."""

    name: str
    body: tuple[Node, ...]
    outputs: tuple[str, ...] = ()


@dataclass(frozen=True)
class Parallel:
    """Runs its branches concurrently, each on an isolated copy of the state."""

    name: str
    branches: tuple[Branch, ...]
    kind: Literal["parallel"] = "parallel"


Node: TypeAlias = Stage | Loop | Conditional | Parallel


@dataclass(frozen=True)
class Workflow:
    """A named, validated IR tree."""

    name: str
    body: tuple[Node, ...]
    description: str = ""

    def __post_init__(self) -> None:
        _check_name(self.name, self.name)
        if not self.body:
            raise WorkflowError(f"workflow {self.name!r} is empty; add at least one stage")
        _validate_seq(self.body, "")

    # -- traversal -------------------------------------------------------------------
    def walk(self) -> Iterator[tuple[str, Node]]:
        """Yield ``(static_path, node)`` depth-first, in execution order of the tree."""
        yield from _walk(self.body, "")

    def find(self, path: str) -> Node:
        """The node at a static path such as ``epoch/batch/forward_backward``."""
        for p, node in self.walk():
            if p == path:
                return node
        raise KeyError(f"no node at path {path!r} in workflow {self.name!r}")

    def paths(self) -> list[str]:
        return [p for p, _ in self.walk()]


def children_of(node: Node) -> Iterator[tuple[str, tuple[Node, ...]]]:
    """The child sequences of a node, each with its path prefix relative to the node."""
    if isinstance(node, Loop):
        yield "", node.body
    elif isinstance(node, Conditional):
        yield "", node.then
        yield "", node.orelse
    elif isinstance(node, Parallel):
        for b in node.branches:
            yield f"{b.name}/", b.body


def _walk(seq: tuple[Node, ...], prefix: str) -> Iterator[tuple[str, Node]]:
    for node in seq:
        path = prefix + node.name
        yield path, node
        for sub, children in children_of(node):
            yield from _walk(children, f"{path}/{sub}")


def _check_name(name: str, where: str) -> None:
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise WorkflowError(
            f"invalid node name {name!r} at {where!r}: use letters, digits, '_', '-' or '.', "
            "starting with a letter or '_' ('/' and '[' are reserved for paths)"
        )


def _validate_seq(seq: tuple[Node, ...], prefix: str) -> None:
    seen: set[str] = set()
    for node in seq:
        path = prefix + getattr(node, "name", "?")
        if not isinstance(node, Stage | Loop | Conditional | Parallel):
            raise WorkflowError(
                f"{path}: expected a stage, loop, conditional or parallel node, "
                f"got {type(node).__name__}"
            )
        _check_name(node.name, path)
        if node.name in seen:
            raise WorkflowError(
                f"duplicate node name {node.name!r} at {path!r}: sibling names must be unique "
                "so every node has a stable path; rename one of them"
            )
        seen.add(node.name)
        _validate_node(node, path)


def _validate_node(node: Node, path: str) -> None:
    if isinstance(node, Stage):
        if not callable(node.fn):
            raise WorkflowError(f"stage {path!r}: {node.fn!r} is not callable")
        if node.cache is not None and not node.outputs:
            raise WorkflowError(
                f"stage {path!r} is cacheable but declares no outputs; list the state keys "
                "it writes in outputs=[...] so a cache hit can restore them"
            )
    elif isinstance(node, Loop):
        if not node.body:
            raise WorkflowError(f"loop {path!r} has an empty body; give it at least one node")
        if isinstance(node.over, bool) or (isinstance(node.over, int) and node.over < 0):
            raise WorkflowError(f"loop {path!r}: count must be a non-negative int")
        _validate_seq(node.body, path + "/")
    elif isinstance(node, Conditional):
        if not callable(node.predicate):
            raise WorkflowError(f"conditional {path!r}: predicate is not callable")
        if not node.then:
            raise WorkflowError(f"conditional {path!r} has an empty 'then' branch")
        # then and else share one namespace so paths stay unique whichever branch runs.
        _validate_seq(node.then + node.orelse, path + "/")
    elif isinstance(node, Parallel):
        if not node.branches:
            raise WorkflowError(f"parallel {path!r} has no branches")
        names: set[str] = set()
        owners: dict[str, str] = {}
        for b in node.branches:
            _check_name(b.name, f"{path}/{b.name}")
            if b.name in names:
                raise WorkflowError(f"parallel {path!r}: duplicate branch name {b.name!r}")
            names.add(b.name)
            if not b.body:
                raise WorkflowError(f"parallel {path!r}: branch {b.name!r} is empty")
            for out in b.outputs:
                if out in owners:
                    raise WorkflowError(
                        f"parallel {path!r}: branches {owners[out]!r} and {b.name!r} both "
                        f"declare output {out!r}; each state key may be written by one branch"
                    )
                owners[out] = b.name
            _validate_seq(b.body, f"{path}/{b.name}/")
