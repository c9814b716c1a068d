"""Inference in a fresh process: the validation phase's resource-budget measurement.

    python -m examples.tiny_lm.infer WEIGHTS_DIR TOKENIZER_DIR --request REQUEST.json

Loads the trained weights (a transformers model directory) and the tokenizer, generates
each prompt of the request, and prints one JSON line: samples, per-generation latencies
and this process's peak RSS. Validation runs it as a subprocess so the figures are those
of serving the model - an interpreter with torch, the model class and the weights - not
of the training process that also holds optimizer state, batches and the dataset.

Only what inference needs is imported. ``transformers.loss`` imports scipy (for
object-detection losses) when scipy is installed; a causal LM never uses it, so it is
hidden from this process (``_hide``), which saves its import and memory.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path

#: Packages transformers imports opportunistically that a causal-LM generation never
#: touches (the object-detection losses' scipy.optimize, image utilities' PIL).
HIDDEN = ("scipy", "PIL")


def _hide(names: tuple[str, ...]) -> None:
    """Make ``names`` unimportable here: a ``None`` entry in ``sys.modules`` makes
    ``importlib.util.find_spec`` report them missing and ``import`` fail fast."""
    for name in names:
        sys.modules.setdefault(name, None)  # type: ignore[arg-type]


def peak_rss_mb() -> float:
    """This process's peak RSS. On Linux ``VmHWM`` of its own address space: ``ru_maxrss``
    would also count the parent's pages the child had between fork and exec."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
    return kb / 1024 if sys.platform != "darwin" else kb / 2**20


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m examples.tiny_lm.infer")
    p.add_argument("weights")
    p.add_argument("tokenizer")
    p.add_argument("--request", required=True, help="JSON: prompts, max_tokens, seeds, ...")
    p.add_argument("--no-hide", action="store_true", help="import scipy/PIL if installed")
    args = p.parse_args(argv)
    if not args.no_hide:
        _hide(HIDDEN)
    req = json.loads(Path(args.request).read_text())
    t_start = time.perf_counter()
    import torch
    from tokenizers import Tokenizer
    from transformers import AutoModelForCausalLM
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()

    torch.set_num_threads(int(req.get("threads", 1)))
    tok = Tokenizer.from_file(str(Path(args.tokenizer) / "tokenizer.json"))
    model = AutoModelForCausalLM.from_pretrained(args.weights, dtype=torch.float32).eval()
    load_s = time.perf_counter() - t_start
    bos = req.get("bos_token_id")
    latencies, samples, generated = [], [], 0
    for i, prompt in enumerate(req["prompts"]):
        ids = tok.encode(prompt).ids
        if bos is not None:
            ids = [bos, *ids]
        for k in range(int(req.get("samples_per_prompt", 1))):
            torch.manual_seed(int(req.get("seed", 0)) + 97 * i + k)
            t0 = time.perf_counter()
            with torch.no_grad():
                out = model.generate(
                    torch.tensor([ids]),
                    max_new_tokens=int(req["max_tokens"]),
                    do_sample=True,
                    temperature=float(req.get("temperature", 0.8)),
                    top_k=int(req.get("top_k", 50)),
                    pad_token_id=req.get("pad_token_id"),
                )
            latencies.append(time.perf_counter() - t0)
            new = out[0, len(ids) :].tolist()
            generated += len(new)
            samples.append({"prompt": prompt, "text": prompt + tok.decode(new)})
    print(
        json.dumps(
            {
                "latencies_s": latencies,
                "samples": samples,
                "generated_tokens": generated,
                "load_s": round(load_s, 3),
                "peak_rss_mb": round(peak_rss_mb(), 1),
                "hidden": [] if args.no_hide else list(HIDDEN),
            }
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
