"""GGUF files in llama.cpp vs the merged transformers model: greedy tokens and logprobs.

    python benchmarks/gguf_llama_cpp.py EXPORT_DIR [--prompts FILE.jsonl] [--tokens 16]

``EXPORT_DIR`` is what ``kitchen export RUN --out EXPORT_DIR --merged --gguf f16 --gguf q8_0``
wrote (``merged/`` and ``gguf/model-*.gguf``). For each prompt (the ``messages`` rows of a
JSONL file rendered with the model's chat template, or a few built-in strings) both models
decode greedily; the table gives, per GGUF type, how many generated tokens agree with
transformers' and the max |logprob difference| of transformers' greedy tokens.

Needs ``llama-cpp-python`` (it compiles llama.cpp from source; not a test dependency).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any

PROMPTS = ["def dispatch(self, request):", "Explain routing in tinyroute.", "import "]


def _prompts(path: str | None, tok: Any) -> list[list[int]]:
    if path is None:
        return [tok.encode(p) for p in PROMPTS]
    out = []
    for line in Path(path).read_text().splitlines():
        msgs = json.loads(line)["messages"][:-1]
        out.append(list(tok.render_chat(msgs, add_generation_prompt=True).tokens))
    return out


def hf_greedy(model: Any, prompt: list[int], n: int) -> tuple[list[int], list[list[float]]]:
    """Greedy tokens and, per step, the full log-softmax row (for comparison)."""
    import torch

    ids = list(prompt)
    rows = []
    with torch.no_grad():
        for _ in range(n):
            logits = model(input_ids=torch.tensor([ids])).logits[0, -1].float()
            lp = torch.log_softmax(logits, -1)
            rows.append(lp.tolist())
            ids.append(int(lp.argmax()))
    return ids[len(prompt) :], rows


def llama_greedy(llm: Any, prompt: list[int], n: int) -> tuple[list[int], list[list[float]]]:
    import numpy as np

    llm.reset()
    ids = list(prompt)
    rows = []
    llm.eval(ids)
    for _ in range(n):
        logits = np.asarray(llm.scores[llm.n_tokens - 1], dtype=np.float64)
        lp = logits - (np.log(np.exp(logits - logits.max()).sum()) + logits.max())
        rows.append(lp.tolist())
        nxt = int(lp.argmax())
        ids.append(nxt)
        llm.eval([nxt])
    return ids[len(prompt) :], rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("export_dir")
    p.add_argument("--prompts", default=None, help="a JSONL file of chat rows (messages)")
    p.add_argument("--tokens", type=int, default=16)
    args = p.parse_args(argv)
    try:
        from llama_cpp import Llama
    except ImportError:
        print("llama-cpp-python is not installed: pip install llama-cpp-python", file=sys.stderr)
        return 2
    from transformers import AutoModelForCausalLM

    from kitchen.adapters.hf.tokenizer import HfTokenizer

    root = Path(args.export_dir)
    merged = root / "merged"
    tok = HfTokenizer.load(merged)
    model = AutoModelForCausalLM.from_pretrained(str(merged)).eval()
    prompts = _prompts(args.prompts, tok)
    ref = [hf_greedy(model, pr, args.tokens) for pr in prompts]
    print(f"{len(prompts)} prompts x {args.tokens} greedy tokens; reference: {merged}")
    print("| gguf | tokens agreeing | prompts identical | max abs logprob diff (HF greedy) |")
    print("| --- | --- | --- | --- |")
    for path in sorted((root / "gguf").glob("model-*.gguf")):
        llm = Llama(str(path), n_ctx=1024, logits_all=True, verbose=False, n_threads=2)
        agree = total = same = 0
        worst = 0.0
        for pr, (want, want_rows) in zip(prompts, ref, strict=True):
            got, got_rows = llama_greedy(llm, pr, args.tokens)
            n_ok = sum(a == b for a, b in zip(got, want, strict=True))
            agree, total, same = agree + n_ok, total + len(want), same + (got == want)
            # compare the distributions along the common prefix (after it they condition on
            # different tokens)
            k = next(
                (i for i, (a, b) in enumerate(zip(got, want, strict=True)) if a != b), len(want)
            )
            for i in range(min(k + 1, len(want))):
                t = want[i]
                worst = max(worst, abs(got_rows[i][t] - want_rows[i][t]))
        print(
            f"| {path.name} | {agree}/{total} | {same}/{len(prompts)} | "
            f"{worst if math.isfinite(worst) else float('nan'):.4f} |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
