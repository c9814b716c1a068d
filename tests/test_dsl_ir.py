"""The DSL builds a validated, immutable IR that prints, serialises and round-trips."""

from __future__ import annotations

import dataclasses
import json
import threading

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kitchen.context import Context
from kitchen.dsl import (
    Workflow,
    branch,
    conditional,
    diff,
    dumps,
    from_json,
    loop,
    parallel,
    stage,
    to_json,
    to_mermaid,
    to_tree,
    workflow,
)
from kitchen.errors import WorkflowError
from kitchen.runner import Runner

# -- module-level callables (so refs resolve when JSON is loaded back) ----------------

_trace_lock = threading.Lock()


def record(ctx: Context) -> None:
    with _trace_lock:
        ctx.vars["trace"].append(ctx.path)


def always(ctx: Context) -> bool:
    return True


def never(ctx: Context) -> bool:
    return False


def two_items(ctx: Context) -> list[str]:
    return ["a", "b"]


# -- random trees --------------------------------------------------------------------

names = st.sampled_from(["a", "b", "c", "d", "e", "f"])


def _unique(children: list[object]) -> list[object]:
    seen, out = set(), []
    for c in children:
        if c.name not in seen:  # type: ignore[attr-defined]
            seen.add(c.name)  # type: ignore[attr-defined]
            out.append(c)
    return out


def trees(allow_parallel: bool) -> st.SearchStrategy[list[object]]:
    leaf = names.map(lambda n: stage(record, name=n))

    def extend(children: st.SearchStrategy[list[object]]) -> st.SearchStrategy[object]:
        seq = st.lists(children, min_size=1, max_size=3).map(_flatten_unique)
        options = [
            st.tuples(names, st.integers(0, 3) | st.just(two_items), seq).map(
                lambda t: loop(t[0], t[1], *t[2])
            ),
            st.tuples(names, st.sampled_from([always, never]), seq, seq).map(
                lambda t: conditional(t[0], t[1], *t[2], orelse=_disjoint(t[2], t[3]))
            ),
        ]
        if allow_parallel:
            options.append(
                st.tuples(names, seq, seq).map(
                    lambda t: parallel(t[0], branch("x", *t[1]), branch("y", *t[2]))
                )
            )
        return st.one_of(*options)

    node = st.recursive(leaf, lambda ch: extend(ch), max_leaves=8)
    return st.lists(node, min_size=1, max_size=4).map(_flatten_unique)


def _flatten_unique(items: list[object]) -> list[object]:
    return _unique(list(items))


def _disjoint(then: list[object], orelse: list[object]) -> list[object]:
    taken = {n.name for n in then}  # type: ignore[attr-defined]
    return [n for n in orelse if n.name not in taken]  # type: ignore[attr-defined]


def reference_paths(nodes: list[dict], prefix: str = "") -> list[str]:
    """An independent interpreter over the JSON form: the runtime paths in order."""
    out: list[str] = []
    for n in nodes:
        path = prefix + n["name"]
        if n["kind"] == "stage":
            out.append(path)
        elif n["kind"] == "loop":
            over = n["over"]
            count = over.get("count", 2 if "fn" in over else len(over.get("items", [])))
            for i in range(count):
                out += reference_paths(n["body"], f"{path}[{i}]/")
        elif n["kind"] == "conditional":
            body = n["then"] if n["when"].endswith(":always") else n.get("else", [])
            out += reference_paths(body, path + "/")
        else:
            for b in n["branches"]:
                out += reference_paths(b["body"], f"{path}/{b['name']}/")
    return out


FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FAST
@given(trees(allow_parallel=True))
def test_json_round_trip(body: list[object]) -> None:
    wf = workflow("w", *body)
    data = to_json(wf)
    again = from_json(json.loads(json.dumps(data)))
    assert to_json(again) == data
    assert to_tree(again) == to_tree(wf)
    assert diff(wf, again) == ""


@FAST
@given(trees(allow_parallel=False))
def test_execution_order_matches_reference_interpreter(body: list[object]) -> None:
    wf = workflow("w", *body)
    ctx = Context()
    ctx.vars["trace"] = []
    Runner().run(wf, ctx)
    assert ctx.vars["trace"] == reference_paths(to_json(wf)["body"])


@FAST
@given(trees(allow_parallel=True))
def test_parallel_trees_run_every_stage_once_in_branch_order(body: list[object]) -> None:
    wf = workflow("w", *body)
    ctx = Context()
    ctx.vars["trace"] = []
    Runner().run(wf, ctx)
    expected = reference_paths(to_json(wf)["body"])
    assert sorted(ctx.vars["trace"]) == sorted(expected)
    # Within one branch (same path prefix up to the branch), order is preserved.
    for prefix in {p.rsplit("/", 1)[0] for p in expected}:
        got = [p for p in ctx.vars["trace"] if p.rsplit("/", 1)[0] == prefix]
        want = [p for p in expected if p.rsplit("/", 1)[0] == prefix]
        assert got == want


@FAST
@given(trees(allow_parallel=True))
def test_static_paths_are_unique(body: list[object]) -> None:
    wf = workflow("w", *body)
    paths = wf.paths()
    assert len(paths) == len(set(paths))
    for p in paths:
        assert wf.find(p) is not None


def test_ir_is_immutable() -> None:
    wf = workflow("w", stage(record))
    with pytest.raises(dataclasses.FrozenInstanceError):
        wf.name = "other"  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        wf.body[0].name = "x"  # type: ignore[misc]


def test_duplicate_sibling_names_are_an_error_naming_the_node() -> None:
    with pytest.raises(WorkflowError, match=r"duplicate node name 'record' at 'epoch/record'"):
        workflow("w", loop("epoch", 2, stage(record), stage(record)))


def test_empty_loop_is_an_error_naming_the_node() -> None:
    with pytest.raises(WorkflowError, match=r"loop 'outer/inner' has an empty body"):
        workflow("w", loop("outer", 1, loop("inner", 3)))


def test_parallel_branches_declaring_the_same_output_is_an_error() -> None:
    with pytest.raises(WorkflowError, match=r"both declare output 'k'"):
        workflow(
            "w",
            parallel(
                "p",
                branch("a", stage(record), outputs=["k"]),
                branch("b", stage(record), outputs=["k"]),
            ),
        )


def test_bad_names_and_non_nodes_are_rejected() -> None:
    with pytest.raises(WorkflowError, match="invalid node name"):
        workflow("w", stage(record, name="a/b"))
    with pytest.raises(WorkflowError, match="not a node or a callable"):
        workflow("w", 42)
    with pytest.raises(WorkflowError, match="is empty"):
        workflow("w")


def test_paths_tree_and_mermaid() -> None:
    wf = workflow(
        "w",
        loop("epoch", 2, loop("batch", 3, stage(record, name="forward_backward"))),
        conditional("maybe", always, stage(record, name="yes"), orelse=[stage(record, name="no")]),
        parallel("p", x=[stage(record, name="sx")], y=[stage(record, name="sy")]),
    )
    assert wf.paths() == [
        "epoch",
        "epoch/batch",
        "epoch/batch/forward_backward",
        "maybe",
        "maybe/yes",
        "maybe/no",
        "p",
        "p/x/sx",
        "p/y/sy",
    ]
    tree = to_tree(wf)
    assert "  loop epoch ×2\n    loop batch ×3\n      stage forward_backward" in tree
    assert "else\n    stage no" in tree
    mm = to_mermaid(wf)
    assert mm.startswith("flowchart TD")
    assert "-->|yes|" in mm and "-->|no|" in mm and "subgraph" in mm
    ctx = Context()
    ctx.vars["trace"] = []
    Runner().run(wf, ctx)
    assert ctx.vars["trace"][:2] == [
        "epoch[0]/batch[0]/forward_backward",
        "epoch[0]/batch[1]/forward_backward",
    ]
    assert "epoch[1]/batch[2]/forward_backward" in ctx.vars["trace"]


def test_lambdas_print_but_do_not_load_back() -> None:
    wf = workflow("w", conditional("c", lambda ctx: True, stage(record)))
    text = dumps(wf)
    assert "<lambda>" in text
    with pytest.raises(WorkflowError, match="lambdas and nested functions"):
        from_json(text)


@dataclasses.dataclass
class Scale:
    factor: float = 2.0
    name: str = "scale"

    def __call__(self, ctx: Context) -> dict[str, float]:
        return {"x": ctx.state.get("x", 1.0) * self.factor}


def test_stage_objects_round_trip_with_their_parameters() -> None:
    wf = workflow("w", stage(Scale(3.0)), stage(record, name="r"))
    again = from_json(dumps(wf))
    assert isinstance(again, Workflow)
    fn = again.body[0].fn  # type: ignore[union-attr]
    assert isinstance(fn, Scale) and fn.factor == 3.0
    ctx = Context()
    ctx.vars["trace"] = []
    Runner().run(again, ctx)
    assert ctx.state["x"] == 3.0
