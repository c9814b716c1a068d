"""Packing: bin-packing properties, positions, targets, and no cross-sample attention."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kitchen.adapters.hf.packing import (
    best_fit_decreasing,
    block_diagonal_attention_mask,
    collate_packed,
    next_token_targets,
    pack_sequences,
)
from kitchen.errors import DataError

samples = st.lists(st.integers(min_value=1, max_value=40), min_size=1, max_size=30)


def _make(lengths: list[int]) -> list[tuple[list[int], list[float]]]:
    """Unique token ids per (sample, position) so every token can be traced back."""
    out = []
    for i, n in enumerate(lengths):
        toks = [i * 1000 + j for j in range(n)]
        weights = [float((i + j) % 2) for j in range(n)]
        out.append((toks, weights))
    return out


@settings(max_examples=150, deadline=None)
@given(lengths=samples, max_length=st.integers(min_value=1, max_value=64))
def test_packing_properties(lengths: list[int], max_length: int) -> None:
    seqs = _make(lengths)
    result = pack_sequences(seqs, max_length)
    expected_kept = [(t[:max_length], w[:max_length]) for t, w in seqs]
    assert result.truncated == sum(1 for n in lengths if n > max_length)
    assert result.truncated_tokens == sum(max(0, n - max_length) for n in lengths)
    seen: list[int] = []
    for row in result.rows:
        assert 0 < len(row) <= max_length
        assert len(row.input_ids) == len(row.weights) == len(row.position_ids)
        assert sum(row.seq_lens) == len(row)
        assert row.cu_seqlens[0] == 0 and row.cu_seqlens[-1] == len(row)
        for k, idx in enumerate(row.sample_indices):
            a, b = row.cu_seqlens[k], row.cu_seqlens[k + 1]
            toks, weights = expected_kept[idx]
            assert list(row.input_ids[a:b]) == toks  # the sample, contiguous and in order
            assert list(row.weights[a:b]) == weights  # weights stay aligned
            assert list(row.position_ids[a:b]) == list(range(b - a))  # restart per sample
        seen += row.input_ids
    # Every (kept) token appears exactly once.
    assert sorted(seen) == sorted(t for toks, _ in expected_kept for t in toks)
    assert sorted(i for r in result.rows for i in r.sample_indices) == list(range(len(lengths)))


@settings(max_examples=100, deadline=None)
@given(lengths=samples, capacity=st.integers(min_value=40, max_value=100))
def test_best_fit_decreasing_is_tight(lengths: list[int], capacity: int) -> None:
    bins = best_fit_decreasing(lengths, capacity)
    loads = [sum(lengths[i] for i in b) for b in bins]
    assert all(load <= capacity for load in loads)
    # BFD never leaves two bins that could be merged into one... for at most one pair it
    # may; the classic guarantee is that at most one bin is at most half full.
    assert sum(1 for load in loads if load * 2 <= capacity) <= 1
    assert best_fit_decreasing(lengths, capacity) == bins  # deterministic


def test_overflow_error_names_the_sample() -> None:
    with pytest.raises(DataError, match=r"row 1 field 'tokens'.*max_length=4"):
        pack_sequences([[1, 2], [1, 2, 3, 4, 5]], 4, on_overflow="error")
    with pytest.raises(DataError, match="empty"):
        pack_sequences([[]], 4)
    with pytest.raises(DataError, match="weights"):
        pack_sequences([([1, 2], [1.0])], 4)


def test_next_token_targets_stay_within_samples() -> None:
    row = pack_sequences([([1, 2, 3], [0.0, 1.0, 1.0]), ([7, 8], [1.0, 1.0])], 8).rows[0]
    assert row.input_ids == (1, 2, 3, 7, 8)
    targets, weights = next_token_targets(row, fill=-1)
    assert targets == [2, 3, -1, 8, -1]
    assert weights == [1.0, 1.0, 0.0, 1.0, 0.0]


def test_block_diagonal_mask_shape_and_values() -> None:
    torch = pytest.importorskip("torch")
    m = block_diagonal_attention_mask([2, 3], total_length=6)[0, 0]
    allowed = torch.isfinite(m)
    expected = torch.tensor(
        [
            [1, 0, 0, 0, 0, 0],
            [1, 1, 0, 0, 0, 0],
            [0, 0, 1, 0, 0, 0],
            [0, 0, 1, 1, 0, 0],
            [0, 0, 1, 1, 1, 0],
            [0, 0, 0, 0, 0, 1],  # padding attends to itself only
        ],
        dtype=torch.bool,
    )
    assert torch.equal(allowed, expected)
    assert float(m[allowed].abs().max()) == 0.0


def test_packed_logits_equal_unpacked_logits() -> None:
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    config = transformers.LlamaConfig(
        vocab_size=97,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=64,
        attn_implementation="sdpa",
    )
    model = transformers.LlamaForCausalLM(config).eval().to(torch.float64)
    g = torch.Generator().manual_seed(1)
    samples = [torch.randint(0, 97, (n,), generator=g).tolist() for n in (7, 3, 11, 5, 9)]
    result = pack_sequences(samples, 20)
    assert len(result.rows) < len(samples)  # something was actually packed
    batch = collate_packed(result.rows, pad_to=20)
    with torch.no_grad():
        packed = model(
            input_ids=batch["input_ids"],
            position_ids=batch["position_ids"],
            attention_mask=batch["attention_mask"].to(torch.float64),
        ).logits
        # Without the block mask the samples would see each other: make sure the test
        # could fail.
        leaky = model(input_ids=batch["input_ids"], position_ids=batch["position_ids"]).logits
        differs = False
        for b, row in enumerate(result.rows):
            for k, idx in enumerate(row.sample_indices):
                a, e = row.cu_seqlens[k], row.cu_seqlens[k + 1]
                alone = model(input_ids=torch.tensor([samples[idx]])).logits[0]
                torch.testing.assert_close(packed[b, a:e], alone, atol=1e-5, rtol=1e-5)
                differs |= not torch.allclose(leaky[b, a:e], alone, atol=1e-5)
        assert differs or all(len(r.seq_lens) == 1 for r in result.rows)


def test_truncation_is_counted_and_logged() -> None:
    from structlog.testing import capture_logs

    with capture_logs() as logs:
        result = pack_sequences([[1] * 10, [2] * 3, [3] * 7], 5)
    assert (result.truncated, result.truncated_tokens) == (2, 7)
    assert [e["truncated"] for e in logs if e["log_level"] == "warning"] == [2]
