"""A seeded, template-driven generator of edit tasks with their ast-grep actions.

Each task is a small Python function or module (names drawn from word lists), an
instruction, and the ast-grep rule(s) that perform the edit; ``post`` is what ast-grep
makes of ``pre`` with those rules, so every generated record is verified by construction
(and :func:`examples.edit_sft_srl.records.parse_record` checks it again on load).

Kinds: variable renames, call rewrites, argument swaps, import changes, method renames,
print → logging, ``== None`` → ``is None``, added keyword arguments, ``len(x) == 0`` →
``not x``, attribute renames; about one task in ten chains two of them (two steps).

    python -m examples.edit_sft_srl.generate --n 800 --seed 0 --out data/generated.jsonl
"""

from __future__ import annotations

import argparse
import json
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

from examples.edit_sft_srl.actions import ActionError, AstGrepAction, apply_action

VARS = (
    "total", "count", "items", "result", "value", "buf", "acc", "idx", "data", "name",
    "path", "size", "tmp", "res", "val", "cfg", "row", "key", "text", "node", "score",
    "limit", "offset", "batch", "chunk", "line", "word", "user", "order", "price",
)  # fmt: skip
FUNCS = (
    "load_config", "read_file", "parse_args", "fetch_user", "save_item", "compute_total",
    "render_page", "send_mail", "open_db", "find_node", "build_index", "split_words",
    "get_price", "update_cache", "check_auth", "format_date", "write_log", "merge_rows",
    "resize_image", "encode_text",
)  # fmt: skip
MODULES = ("json", "os", "re", "time", "math", "random", "logging", "shutil", "csv", "glob")
ALT_MODULES = {"json": "ujson", "time": "timeit", "re": "regex", "csv": "unicodecsv"}
METHODS = ("append", "extend", "update", "close", "flush", "reset", "commit", "clear", "sort")
ATTRS = ("name", "size", "path", "owner", "status", "mode", "level", "label", "color")

Task = tuple[str, str, list[AstGrepAction]]  # (instruction, pre, actions)


def _rule(kind: str, pattern: str, fix: str) -> AstGrepAction:
    return AstGrepAction(id=kind, language="python", pattern=pattern, fix=fix)


def _pick(rng: random.Random, pool: tuple[str, ...], k: int) -> list[str]:
    return rng.sample(pool, k)


def rename_variable(rng: random.Random) -> Task:
    old, new, other = _pick(rng, VARS, 3)
    fn = rng.choice(FUNCS)
    pre = (
        f"def {fn}({other}):\n"
        f"    {old} = 0\n"
        f"    for x in {other}:\n"
        f"        {old} += x\n"
        f"    return {old}\n"
    )
    say = rng.choice(("Rename the variable `{a}` to `{b}`.", "Rename `{a}` to `{b}`."))
    return say.format(a=old, b=new), pre, [_rule("rename-variable", old, new)]


def rewrite_call(rng: random.Random) -> Task:
    old, new, helper = _pick(rng, FUNCS, 3)
    a, b = _pick(rng, VARS, 2)
    pre = (
        f"def {helper}({a}, {b}):\n"
        f"    first = {old}({a})\n"
        f"    second = {old}({b}, strict=True)\n"
        f"    return first, second\n"
    )
    say = rng.choice(
        ("Replace calls to `{a}` with `{b}`.", "Call `{b}` instead of `{a}` everywhere.")
    )
    return (
        say.format(a=old, b=new),
        pre,
        [_rule("rewrite-call", f"{old}($$$ARGS)", f"{new}($$$ARGS)")],
    )


def swap_arguments(rng: random.Random) -> Task:
    fn, helper = _pick(rng, FUNCS, 2)
    a, b, c = _pick(rng, VARS, 3)
    pre = f"def {helper}({a}, {b}, {c}):\n    x = {fn}({a}, {b})\n    return {fn}(x, {c})\n"
    say = rng.choice(
        ("Swap the two arguments of every `{f}` call.", "Reverse the argument order of `{f}`.")
    )
    return say.format(f=fn), pre, [_rule("swap-arguments", f"{fn}($A, $B)", f"{fn}($B, $A)")]


def replace_import(rng: random.Random) -> Task:
    mod = rng.choice(tuple(ALT_MODULES))
    alt = ALT_MODULES[mod]
    fn = rng.choice(FUNCS)
    v = rng.choice(VARS)
    pre = f"import {mod}\n\n\ndef {fn}({v}):\n    return {mod}.dumps({v})\n"
    say = rng.choice(("Use `{b}` in place of `{a}`, keeping the name `{a}`.",
                      "Import `{b}` as `{a}` instead of `{a}`."))  # fmt: skip
    return (
        say.format(a=mod, b=alt),
        pre,
        [_rule("replace-import", f"import {mod}", f"import {alt} as {mod}")],
    )


def move_import(rng: random.Random) -> Task:
    old, new = _pick(rng, MODULES, 2)
    names = _pick(rng, FUNCS, rng.choice((1, 2)))
    v = rng.choice(VARS)
    pre = f"from {old} import {', '.join(names)}\n\n\ndef run({v}):\n    return {names[0]}({v})\n"
    say = rng.choice(
        ("Import from `{b}` instead of `{a}`.", "Move the `from {a} import` to `{b}`.")
    )
    return (
        say.format(a=old, b=new),
        pre,
        [_rule("move-import", f"from {old} import $$$NAMES", f"from {new} import $$$NAMES")],
    )


def rename_method(rng: random.Random) -> Task:
    old, new = _pick(rng, METHODS, 2)
    a, b = _pick(rng, VARS, 2)
    fn = rng.choice(FUNCS)
    pre = f"def {fn}({a}, {b}):\n    {a}.{old}({b})\n    {b}.{old}()\n    return {a}\n"
    say = rng.choice(("Rename the method `{a}` to `{b}`.", "Call `.{b}()` instead of `.{a}()`."))
    return (
        say.format(a=old, b=new),
        pre,
        [_rule("rename-method", f"$OBJ.{old}($$$ARGS)", f"$OBJ.{new}($$$ARGS)")],
    )


def print_to_logging(rng: random.Random) -> Task:
    fn = rng.choice(FUNCS)
    a, b = _pick(rng, VARS, 2)
    level = rng.choice(("info", "debug", "warning"))
    pre = f"def {fn}({a}, {b}):\n    print({a})\n    print('done', {b})\n    return {a}\n"
    say = rng.choice(
        ("Use `logger.{lv}` instead of `print`.", "Replace `print` calls with `logger.{lv}`.")
    )
    return (
        say.format(lv=level),
        pre,
        [_rule("print-to-logging", "print($$$ARGS)", f"logger.{level}($$$ARGS)")],
    )


def is_none(rng: random.Random) -> Task:
    fn = rng.choice(FUNCS)
    a, b = _pick(rng, VARS, 2)
    pre = f"def {fn}({a}, {b}):\n    if {a} == None:\n        return {b}\n    return {a}\n"
    say = rng.choice(("Compare `{a}` with `None` using `is`.", "Use `is None` for `{a}`."))
    return say.format(a=a), pre, [_rule("is-none", f"{a} == None", f"{a} is None")]


def add_keyword(rng: random.Random) -> Task:
    fn, helper = _pick(rng, FUNCS, 2)
    a = rng.choice(VARS)
    kw, val = rng.choice((("timeout", "10"), ("retries", "3"), ("strict", "True"), ("limit", "5")))
    pre = f"def {helper}({a}):\n    out = {fn}({a})\n    return {fn}(out)\n"
    say = rng.choice(("Pass `{k}={v}` to every `{f}` call.", "Add `{k}={v}` to the `{f}` calls."))
    return (
        say.format(k=kw, v=val, f=fn),
        pre,
        [_rule("add-keyword", f"{fn}($$$ARGS)", f"{fn}($$$ARGS, {kw}={val})")],
    )


def simplify_len(rng: random.Random) -> Task:
    fn = rng.choice(FUNCS)
    a = rng.choice(VARS)
    pre = f"def {fn}({a}):\n    if len({a}) == 0:\n        return None\n    return {a}[0]\n"
    say = rng.choice(("Replace `len({a}) == 0` with `not {a}`.", "Simplify the emptiness check."))
    return say.format(a=a), pre, [_rule("simplify-len", "len($X) == 0", "not $X")]


def rename_attribute(rng: random.Random) -> Task:
    old, new = _pick(rng, ATTRS, 2)
    a, b = _pick(rng, VARS, 2)
    fn = rng.choice(FUNCS)
    pre = f"def {fn}({a}, {b}):\n    {b} = {a}.{old}\n    return {b} or {a}.{old}\n"
    say = rng.choice(("Rename the attribute `{a}` to `{b}`.", "Read `.{b}` instead of `.{a}`."))
    return say.format(a=old, b=new), pre, [_rule("rename-attribute", f"$OBJ.{old}", f"$OBJ.{new}")]


KINDS: dict[str, Callable[[random.Random], Task]] = {
    "rename_variable": rename_variable,
    "rewrite_call": rewrite_call,
    "swap_arguments": swap_arguments,
    "replace_import": replace_import,
    "move_import": move_import,
    "rename_method": rename_method,
    "print_to_logging": print_to_logging,
    "is_none": is_none,
    "add_keyword": add_keyword,
    "simplify_len": simplify_len,
    "rename_attribute": rename_attribute,
}


def _two_step(rng: random.Random) -> Task:
    """A rename, then a call rewrite, on one function."""
    old, new, other = _pick(rng, VARS, 3)
    f_old, f_new, helper = _pick(rng, FUNCS, 3)
    pre = f"def {helper}({other}):\n    {old} = {f_old}({other})\n    return {old}\n"
    instruction = f"Rename `{old}` to `{new}`, then replace calls to `{f_old}` with `{f_new}`."
    return (
        instruction,
        pre,
        [
            _rule("rename-variable", old, new),
            _rule("rewrite-call", f"{f_old}($$$ARGS)", f"{f_new}($$$ARGS)"),
        ],
    )


def generate(n: int, seed: int = 0, two_step: float = 0.1) -> list[dict[str, Any]]:
    """``n`` distinct verified records (``id``: ``gen-<kind>-<k>``)."""
    rng = random.Random(seed)
    kinds = sorted(KINDS)
    seen: set[tuple[str, str]] = set()
    out: list[dict[str, Any]] = []
    attempts = 0
    while len(out) < n:
        attempts += 1
        if attempts > 50 * n:
            raise RuntimeError(f"could not generate {n} distinct tasks (got {len(out)})")
        multi = rng.random() < two_step
        kind = "two_step" if multi else kinds[len(out) % len(kinds)]
        instruction, pre, actions = _two_step(rng) if multi else KINDS[kind](rng)
        if (instruction, pre) in seen:
            continue
        code = pre
        try:
            for a in actions:
                code = apply_action(code, a)
        except ActionError:
            continue  # a draw whose names collide (e.g. the rule would touch nothing)
        seen.add((instruction, pre))
        out.append(
            {
                "id": f"gen-{kind.replace('_', '-')}-{len(out):04d}",
                "instruction": instruction,
                "lang": "python",
                "pre": pre,
                "post": code,
                "actions": [a.as_dict() for a in actions],
                "source": f"generated:{kind}",
            }
        )
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m examples.edit_sft_srl.generate")
    p.add_argument("--n", type=int, default=800)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, required=True)
    a = p.parse_args(argv)
    rows = generate(a.n, a.seed)
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    print(f"wrote {len(rows)} tasks to {a.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
