"""The workflow DSL: small functions that build IR nodes.

wf = workflow(
    "supervised",
    stage(load_dataset, replay=True),
    loop("epoch", lambda ctx: ctx.config.epochs,
         loop("batch", batches_of_epoch,
              stage(forward_backward), stage(optim_step))),
    conditional("eval_due", should_eval, stage(evaluate), orelse=[stage(skip)]),
    parallel("shards", a=[stage(work_a)], b=[stage(work_b)]),
)
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

from kitchen.dsl.nodes import Branch, Conditional, Loop, LoopSource, Node, Parallel, Stage, Workflow
from kitchen.errors import WorkflowError


def _stage_name(fn: Any) -> str:
    name = getattr(fn, "name", None) or getattr(fn, "__name__", None)
    if not isinstance(name, str):
        name = type(fn).__name__
    return name


def stage(
    fn: Callable[..., Any] | Stage,
    *,
    name: str | None = None,
    outputs: Sequence[str] = (),
    replay: bool | None = None,
    rollback: Callable[..., Any] | None = None,
    cache: Any = None,
    **params: Any,
) -> Stage:
    """A stage node calling ``fn(ctx, **params)``.

    ``fn`` is a function or a stage object (any callable; a class instance may define
    ``name``, ``outputs``, ``replay``, ``rollback(ctx, error)`` and ``restore``).
    ``cache=CachePolicy(inputs=[...])`` skips the stage when its content-hash key matches
    a stored result (see :mod:`kitchen.runner.cache`).
    """
    if isinstance(fn, Stage):
        return fn
    if not callable(fn):
        raise WorkflowError(f"stage(): {fn!r} is not callable")
    rb = rollback if rollback is not None else getattr(fn, "rollback", None)
    return Stage(
        name=name or _stage_name(fn),
        fn=fn,
        params=dict(params),
        outputs=tuple(outputs or getattr(fn, "outputs", ()) or ()),
        replay=bool(replay if replay is not None else getattr(fn, "replay", False)),
        rollback=rb if callable(rb) else None,
        cache=cache if cache is not None else getattr(fn, "cache", None),
    )


def _nodes(items: Iterable[Any], where: str) -> tuple[Node, ...]:
    out: list[Node] = []
    for item in items:
        if isinstance(item, Stage | Loop | Conditional | Parallel):
            out.append(item)
        elif isinstance(item, list | tuple):
            out.extend(_nodes(item, where))
        elif callable(item):
            out.append(stage(item))
        else:
            raise WorkflowError(f"{where}: {item!r} is not a node or a callable")
    return tuple(out)


def loop(name: str, over: LoopSource | Iterable[Any], *body: Any, progress: bool = False) -> Loop:
    """Repeat ``body`` over a count, a sequence of items, or ``over(ctx)``."""
    src: LoopSource
    if isinstance(over, int) or callable(over):
        src = over
    else:
        src = tuple(over)
    return Loop(name=name, over=src, body=_nodes(body, f"loop {name!r}"), progress=progress)


def conditional(
    name: str,
    when: Callable[[Any], Any],
    *then: Any,
    orelse: Sequence[Any] = (),
) -> Conditional:
    """Run ``then`` if ``when(ctx)`` is truthy, otherwise ``orelse``."""
    return Conditional(
        name=name,
        predicate=when,
        then=_nodes(then, f"conditional {name!r}"),
        orelse=_nodes(orelse, f"conditional {name!r} else"),
    )


def branch(name: str, *body: Any, outputs: Sequence[str] = ()) -> Branch:
    """A named branch for :func:`parallel` with its declared outputs."""
    return Branch(name=name, body=_nodes(body, f"branch {name!r}"), outputs=tuple(outputs))


def parallel(name: str, *branches: Branch, **named: Any) -> Parallel:
    """Concurrent branches: ``parallel("p", branch("a", ...), b=[stage(f)])``."""
    bs = list(branches)
    for bname, body in named.items():
        bs.append(branch(bname, *(body if isinstance(body, list | tuple) else [body])))
    return Parallel(name=name, branches=tuple(bs))


def workflow(name: str, *body: Any, description: str = "") -> Workflow:
    """A validated workflow; raises :class:`kitchen.errors.WorkflowError` naming bad nodes."""
    return Workflow(name=name, body=_nodes(body, f"workflow {name!r}"), description=description)
