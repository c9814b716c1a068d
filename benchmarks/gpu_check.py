"""The hf backend on a GPU: LoRA and QLoRA SFT (bf16, packing) on a Qwen2.5-0.5B-shaped
model built from config, plus a short RL run. Never part of the test suite.

What it does, per mode (``lora``, ``qlora``):

1. builds ``HfTrainingClient`` over a from-config ``qwen2`` model shaped like Qwen2.5-0.5B
   (24 layers, 896 wide, 14 heads / 2 KV heads, MLP 4864, vocabulary 151,936, tied
   embeddings) with ``model.device: auto`` and ``model.dtype: auto`` (bf16 on CUDA) and
   ``packing: true``;
2. **asserts** that the resolved device is CUDA, that every parameter lives there, and (with
   forward hooks on every module during one step) that every activation does too;
3. times ``--steps`` SFT steps (``forward_backward`` + ``optim_step``, mixed-length datums
   packed into rows of ``--seq-len``) after one warm-up step and prints tokens/s, MFU and
   peak GPU memory (``torch.cuda.max_memory_allocated``);
4. RL (``lora`` only): ``--rl-iters`` iterations of sample (a group of ``--group`` samples
   for each of ``--prompts`` prompts, ``--max-tokens`` new tokens) → reward → centred
   advantages → ``forward_backward(importance_sampling)`` → ``optim_step``; prints
   samples/s and sampled tokens/s.

**MFU** = achieved model FLOPs/s ÷ the GPU's dense bf16 peak. Model FLOPs per trained token
= ``6·N + 12·L·d·T`` (the PaLM appendix-B convention): ``N`` = parameters that do matmuls
per token (all but the input embedding; the tied LM head counted once), ``L`` layers,
``d`` model width, ``T`` the packed row length (attention score and value products). This
counts a full fine-tune's FLOPs for LoRA too (the usual convention, so MFU stays comparable
across methods; LoRA skips the frozen weights' gradient matmuls, so its *hardware*
utilisation is higher than shown). Peaks (dense bf16, no sparsity): H100/H200 SXM 989
TFLOP/s, A100 312, L40S 362, L4 121, A10 125, RTX 4090 165; ``--peak-tflops`` overrides.

``--cpu-smoke`` runs the same code on the CPU at a tiny shape (2 layers, 64 wide, vocab
2048, a few steps) to prove the script works without a GPU; the device assertions then
check for the CPU instead, and MFU is not computed.

Usage::

    python benchmarks/gpu_check.py                 # on a CUDA machine, ~2-4 min on an H100
    python benchmarks/gpu_check.py --cpu-smoke     # anywhere, ~1 min on 2 CPU cores
"""

from __future__ import annotations

import argparse
import math
import os
import random
import statistics
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

QWEN25_05B: dict[str, Any] = {
    "model_type": "qwen2",
    "hidden_size": 896,
    "intermediate_size": 4864,
    "num_hidden_layers": 24,
    "num_attention_heads": 14,
    "num_key_value_heads": 2,
    "vocab_size": 151_936,
    "max_position_embeddings": 4096,
    "tie_word_embeddings": True,
    "rope_theta": 1_000_000.0,
}
SMOKE: dict[str, Any] = {
    **QWEN25_05B,
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "vocab_size": 2048,
}
LORA = {"rank": 16, "alpha": 32, "dropout": 0.0, "target_modules": "all-linear"}

#: Dense bf16 tensor-core peaks in TFLOP/s, by a substring of the device name.
PEAK_TFLOPS = {
    "H200": 989.0,
    "H100": 989.0,
    "A100": 312.0,
    "L40S": 362.0,
    "L4": 121.0,
    "A10": 125.0,
    "4090": 165.0,
}


def peak_tflops(name: str) -> float | None:
    for key, value in PEAK_TFLOPS.items():
        if key in name:
            return value
    return None


def matmul_params(config: dict[str, Any]) -> int:
    """Parameters that take part in a matmul per token (all but the input embedding)."""
    d, f, L = config["hidden_size"], config["intermediate_size"], config["num_hidden_layers"]
    heads, kv = config["num_attention_heads"], config["num_key_value_heads"]
    head_dim = d // heads
    attn = d * d + 2 * d * kv * head_dim + d * d  # q, k, v, o
    mlp = 3 * d * f
    return L * (attn + mlp) + config["vocab_size"] * d  # + the LM head


def flops_per_token(config: dict[str, Any], row_len: int) -> float:
    d, L = config["hidden_size"], config["num_hidden_layers"]
    return 6.0 * matmul_params(config) + 12.0 * L * d * row_len


# --- data -----------------------------------------------------------------------------------


def sequences(n: int, lo: int, hi: int, vocab: int, seed: int) -> list[list[int]]:
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        k = round(math.exp(rng.uniform(math.log(lo), math.log(hi))))
        out.append([rng.randrange(4, vocab) for _ in range(k + 1)])
    return out


def step_batches(
    vocab: int, steps: int, budget: int, seq_len: int, seed: int
) -> list[list[list[int]]]:
    """``steps`` groups of mixed-length sequences, each about ``budget`` tokens."""
    pool = sequences(steps * budget // 64 + 64, 32, seq_len, vocab, seed)
    out: list[list[list[int]]] = []
    cur: list[list[int]] = []
    n = 0
    for s in pool:
        if cur and n + len(s) - 1 > budget:
            out.append(cur)
            cur, n = [], 0
            if len(out) == steps:
                break
        cur.append(s)
        n += len(s) - 1
    return out


# --- checks ---------------------------------------------------------------------------------


def assert_on_device(client: Any, expected: Any, data: list[Any]) -> None:
    """Parameters, and every activation of one forward_backward, on ``expected``."""
    import torch

    model = client.model
    bad = [n for n, p in model.named_parameters() if p.device != expected]
    assert not bad, f"parameters off {expected}: {bad[:3]}"
    seen: set[Any] = set()

    def hook(_m: Any, _a: Any, out: Any) -> None:
        for t in out if isinstance(out, tuple) else (out,):
            if isinstance(t, torch.Tensor):
                seen.add(t.device)

    handles = [m.register_forward_hook(hook) for m in model.modules()]
    try:
        client.forward_backward(data, "cross_entropy").result()
    finally:
        for h in handles:
            h.remove()
    assert seen == {expected}, f"activations on {seen}, expected only {expected}"
    grads = {p.grad.device for p in model.parameters() if p.grad is not None}
    assert grads == {expected}, f"gradients on {grads}"


def sync(device: Any) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


# --- SFT ------------------------------------------------------------------------------------


def sft(mode: str, config: dict[str, Any], args: argparse.Namespace, device: str) -> dict[str, Any]:
    import torch

    from kitchen.adapters.hf.training import HfTrainingClient
    from kitchen.ports import AdamParams
    from kitchen.testing.datums import ce_datum

    spec = {
        "config": config,
        "mode": mode,
        "lora": LORA,
        "seed": 0,
        "device": device,
        "dtype": "auto",
        "packing": True,
        "pack_length": args.seq_len,
        "attn_implementation": "sdpa",
    }
    client = HfTrainingClient(spec)
    place = client.placement
    client.load().result()
    if place.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(place.device)
    vocab = int(config["vocab_size"])
    budget = args.batch * args.seq_len
    groups = step_batches(vocab, args.steps + 2, budget, args.seq_len, seed=1)
    data = [[ce_datum(s) for s in g] for g in groups]
    assert_on_device(client, place.device, data[0])
    client.optim_step(AdamParams(learning_rate=1e-4)).result()
    adam = AdamParams(learning_rate=1e-4, grad_clip_norm=1.0)
    # warm-up step, then the timed ones (futures pipelined as the workflows do)
    client.forward_backward(data[1], "cross_entropy").result()
    client.optim_step(adam).result()
    sync(place.device)
    t0 = time.perf_counter()
    futs = []
    for batch in data[2:]:
        futs.append(client.forward_backward(batch, "cross_entropy"))
        futs.append(client.optim_step(adam))
    losses = [f.result().metrics["loss:mean"] for f in futs[0::2]]
    for f in futs[1::2]:
        f.result()
    sync(place.device)
    secs = time.perf_counter() - t0
    tokens = sum(d.model_input.length for b in data[2:] for d in b)
    out: dict[str, Any] = {
        "mode": mode,
        "device": str(place.device),
        "dtype": place.dtype_name,
        "tokens_per_s": tokens / secs,
        "step_s": secs / max(1, len(data) - 2),
        "tokens_per_step": tokens / max(1, len(data) - 2),
        "loss_first": losses[0],
        "loss_last": losses[-1],
        "flops_per_token": flops_per_token(config, args.seq_len),
    }
    if place.device.type == "cuda":
        out["peak_gb"] = torch.cuda.max_memory_allocated(place.device) / 1e9
        out["gpu"] = torch.cuda.get_device_name(place.device)
    out["client"] = client
    return out


# --- RL -------------------------------------------------------------------------------------


def rl(client: Any, config: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    from kitchen.ports import AdamParams, Datum, ModelInput, SamplingParams, TensorData

    vocab = int(config["vocab_size"])
    prompts = sequences(args.prompts, 16, 64, vocab, seed=7)
    params = SamplingParams(max_tokens=args.max_tokens, temperature=1.0, seed=0)
    sample_s, n_samples, n_tokens = 0.0, 0, 0
    for it in range(args.rl_iters):
        sampler = client.save_weights_and_get_sampling_client(f"rl-{it}")
        sampler.model  # wait for the snapshot: time the sampling alone  # noqa: B018
        device = client.device
        sync(device)
        t0 = time.perf_counter()
        futs = [(p, sampler.sample(ModelInput.from_ints(p), args.group, params)) for p in prompts]
        groups = [(p, f.result()) for p, f in futs]
        sync(device)
        if it > 0 or args.rl_iters == 1:  # the first iteration warms the decode kernels
            sample_s += time.perf_counter() - t0
            n_samples += sum(len(r.sequences) for _, r in groups)
            n_tokens += sum(len(s.tokens) for _, r in groups for s in r.sequences)
        datums = []
        for p, r in groups:
            # Reward: the share of even token ids (learnable and cheap); centred per group.
            rewards = [
                sum(t % 2 == 0 for t in s.tokens) / max(1, len(s.tokens)) for s in r.sequences
            ]
            mean = statistics.fmean(rewards)
            for s, rew in zip(r.sequences, rewards, strict=True):
                if not s.tokens:
                    continue
                full = [*p, *s.tokens]
                n_in = len(full) - 1
                n_prompt = len(p) - 1
                lps = [0.0] * n_prompt + list(s.logprobs)
                adv = [0.0] * n_prompt + [rew - mean] * len(s.tokens)
                datums.append(
                    Datum(
                        ModelInput.from_ints(full[:-1]),
                        {
                            "target_tokens": TensorData(tuple(full[1:]), "int64"),
                            "logprobs": TensorData(tuple(lps[:n_in]), "float32"),
                            "advantages": TensorData(tuple(adv[:n_in]), "float32"),
                        },
                    )
                )
        client.forward_backward(datums, "importance_sampling").result()
        client.optim_step(AdamParams(learning_rate=1e-4)).result()
        sampler.close()
    return {
        "samples_per_s": n_samples / sample_s if sample_s else float("nan"),
        "sampled_tokens_per_s": n_tokens / sample_s if sample_s else float("nan"),
        "samples": n_samples,
    }


# --- driver ---------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cpu-smoke", action="store_true", help="tiny shape on the CPU")
    ap.add_argument("--modes", default="lora,qlora")
    ap.add_argument("--steps", type=int, default=None, help="timed SFT steps (default 8)")
    ap.add_argument("--batch", type=int, default=None, help="rows of --seq-len per step")
    ap.add_argument("--seq-len", type=int, default=None, help="packed row length")
    ap.add_argument("--rl-iters", type=int, default=3)
    ap.add_argument("--prompts", type=int, default=None)
    ap.add_argument("--group", type=int, default=None)
    ap.add_argument("--max-tokens", type=int, default=None)
    ap.add_argument("--peak-tflops", type=float, default=None)
    args = ap.parse_args(argv)
    smoke = args.cpu_smoke
    defaults = (
        {"steps": 2, "batch": 2, "seq_len": 128, "prompts": 2, "group": 2, "max_tokens": 8}
        if smoke
        else {"steps": 8, "batch": 8, "seq_len": 1024, "prompts": 8, "group": 8, "max_tokens": 128}
    )
    for k, v in defaults.items():
        if getattr(args, k) is None:
            setattr(args, k, v)

    import torch
    import transformers

    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    config = SMOKE if smoke else QWEN25_05B
    device = "cpu" if smoke else "auto"
    if not smoke and not torch.cuda.is_available():
        print("gpu_check: no CUDA device here; run with --cpu-smoke to check the script itself")
        return 2
    print(
        f"gpu_check: {'CPU smoke' if smoke else 'CUDA'}; torch {torch.__version__} "
        f"(CUDA {torch.version.cuda}), transformers {transformers.__version__}; model qwen2 "
        f"{config['num_hidden_layers']}x{config['hidden_size']} vocab {config['vocab_size']:,}; "
        f"{args.batch}x{args.seq_len} packed tokens/step, {args.steps} timed steps"
    )
    rows = []
    for mode in [m for m in args.modes.split(",") if m]:
        if mode == "qlora" and not _has_bnb():
            print("  qlora: skipped (bitsandbytes not installed)")
            continue
        res = sft(mode, config, args, device)
        client = res.pop("client")
        expected = "cpu" if smoke else "cuda"
        assert res["device"].startswith(expected), res["device"]
        if not smoke:
            assert res["dtype"] == "bfloat16", res["dtype"]
        peak = args.peak_tflops or (None if smoke else peak_tflops(res.get("gpu", "")))
        res["mfu"] = res["tokens_per_s"] * res["flops_per_token"] / (peak * 1e12) if peak else None
        res["peak_tflops"] = peak
        if mode == "lora" and args.rl_iters > 0:
            res.update(rl(client, config, args))
        client.close()
        rows.append(res)
        mfu = f"{100 * res['mfu']:.1f}%" if res["mfu"] is not None else "n/a"
        mem = f"{res['peak_gb']:.2f} GB" if "peak_gb" in res else "n/a (CPU)"
        rl_part = (
            f", RL {res['samples_per_s']:.2f} samples/s ({res['sampled_tokens_per_s']:.0f} tok/s)"
            if "samples_per_s" in res
            else ""
        )
        print(
            f"  {mode:<6} {res['device']} {res['dtype']}: {res['tokens_per_s']:.0f} tok/s, "
            f"MFU {mfu} (peak {peak or '-'} TFLOP/s, {res['flops_per_token'] / 1e9:.3g} "
            f"GFLOP/token), peak GPU memory {mem}, loss {res['loss_first']:.3f} -> "
            f"{res['loss_last']:.3f}{rl_part}"
        )
    print("RESULT " + " ".join(f"{r['mode']}_tok_s={r['tokens_per_s']:.0f}" for r in rows))
    print("gpu_check: all device assertions passed")
    return 0


def _has_bnb() -> bool:
    try:
        import bitsandbytes  # noqa: F401
    except ImportError:
        return False
    return True


if __name__ == "__main__":
    sys.exit(main())
