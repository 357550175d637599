"""Packed rows forwarded and backpropagated one at a time (clo.step) give the micro-batch's
gradients and metrics; the activation policy picks that on CPUs and under tight budgets."""

from pathlib import Path

import pytest
import torch
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

from clo.activation_policy import (
    MicroBatchShape,
    choose_checkpointing,
    estimate,
    largest_micro_batch,
    largest_row,
)
from clo.config import TrainConfig
from clo.encoding import encode_quads, pad_token_id
from clo.reference import compute_logps
from clo.seed import builtin_parallel
from clo.step import loss_function, loss_step, step_totals
from clo.trainable import apply_trainable
from tests.support.threads import one_torch_thread  # noqa: F401  (autouse)

QUADS = builtin_parallel("de")[:3]


def _grads_and_metrics(model, seqs, ref, loss_fn, pad_id, rows):  # type: ignore[no-untyped-def]
    model.zero_grad(set_to_none=True)
    out, _ = loss_step(model, seqs, ref, loss_fn, pad_id, 64, packed=True, rows_per_forward=rows)
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}
    return grads, out.metrics()


@pytest.mark.parametrize(
    "settings",
    [
        dict(method="clo"),
        dict(method="clo", english_nll=True, preference_loss="ipo"),
        dict(method="dpo", preference_loss="hinge"),
    ],
)
def test_one_row_at_a_time_equals_the_whole_micro_batch(tiny_llama: Path, settings: dict) -> None:
    model = AutoModelForCausalLM.from_pretrained(tiny_llama)
    tok = AutoTokenizer.from_pretrained(tiny_llama)
    config = TrainConfig(trainable="attention", max_length=96, max_prompt_length=48, **settings)
    encoded, _ = encode_quads(tok, QUADS, config.max_length, config.max_prompt_length)
    pad = pad_token_id(tok)
    ref, _ = compute_logps(model, encoded, pad, 4, 64, packed=True)
    # a reference other than the policy, so the DPO terms have non-zero gradients
    ref = ref + torch.linspace(-2.0, 2.0, ref.numel()).view_as(ref)
    model = apply_trainable(model, config)
    ids = list(range(len(encoded)))
    loss_fn = loss_function(config, settings["method"], step_totals(config, "clo", encoded, [ids]))
    seqs = [s for ex in encoded for s in ex]
    whole = _grads_and_metrics(model, seqs, ref, loss_fn, pad, None)
    one = _grads_and_metrics(model, seqs, ref, loss_fn, pad, 1)
    two = _grads_and_metrics(model, seqs, ref, loss_fn, pad, 4)  # groups of 4 rows and of 2
    for name, g in whole[0].items():
        scale = float(g.abs().max())
        assert scale > 0, name
        for other in (one, two):
            torch.testing.assert_close(other[0][name], g, rtol=1e-5, atol=1e-5 * scale, msg=name)
    # the metrics are the loss of the policy's log-probs, scored independently (unpacked)
    with torch.no_grad():
        policy, counts = compute_logps(model, encoded, pad, 4, 64, packed=False)
    for key, value in loss_fn(policy, ref, counts).metrics().items():
        assert whole[1][key] == pytest.approx(value, rel=1e-4, abs=1e-6), key
    for key, value in whole[1].items():
        assert one[1][key] == pytest.approx(value, rel=1e-5, abs=1e-7), key
        assert two[1][key] == pytest.approx(value, rel=1e-5, abs=1e-7), key


def _shapes(path: Path):  # type: ignore[no-untyped-def]
    tok = AutoTokenizer.from_pretrained(path)
    encoded, _ = encode_quads(tok, QUADS, 96, 48)
    return largest_micro_batch(encoded, 3, packed=True), largest_row(encoded)


KW: dict = dict(optimizer="adamw", chunk_tokens=256)


@pytest.mark.parametrize(
    ("width", "rows"),
    # as few rows per forward as keep MIN_CPU_FORWARD_TOKENS (512) tokens in it
    [(600, 1), (512, 1), (200, 3), (110, 5), (90, None)],  # None: all 6 rows
)
def test_cpu_runs_forward_as_few_rows_as_keep_the_matmuls_deep(
    tiny_llama: Path, width: int, rows: int | None
) -> None:
    model = AutoModelForCausalLM.from_pretrained(tiny_llama)
    batch, row = MicroBatchShape(6, width, 6 * 50), MicroBatchShape(1, width, 50)
    choice = choose_checkpointing(
        model, batch, requested=False, budget_mb=None, row=row, precision="fp32", **KW
    )
    assert choice.rows_per_forward == rows
    assert choice.rows_reason == ("fits" if rows is None else "cpu")
    held = batch if rows is None else MicroBatchShape(rows, width, rows * 50)
    assert (
        choice.estimate_off_bytes
        == estimate(model, held, checkpointing=False, precision="fp32", **KW).total
    )


def test_unpacked_runs_and_the_row_shapes(tiny_llama: Path) -> None:
    model = AutoModelForCausalLM.from_pretrained(tiny_llama)
    batch, row = _shapes(tiny_llama)
    assert (batch.rows, row.rows) == (6, 1) and row.width <= batch.width
    unpacked = choose_checkpointing(
        model, batch, requested=False, budget_mb=None, precision="fp32", **KW
    )
    assert (unpacked.rows_per_forward, unpacked.rows_reason) == (None, "unpacked")


def test_gpu_runs_go_row_by_row_only_when_the_micro_batch_does_not_fit(tiny_llama: Path) -> None:
    # a model off the CPU (meta tensors: shapes without memory) takes the accelerator rule
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(tiny_llama))
    batch, row = _shapes(tiny_llama)
    kw: dict = dict(precision="bf16", **KW)
    whole = estimate(model, batch, checkpointing=False, **kw).total
    one = estimate(model, row, checkpointing=False, **kw).total
    mb = 2**20

    def choose(budget: int):  # type: ignore[no-untyped-def]
        return choose_checkpointing(model, batch, requested=False, budget_mb=budget, row=row, **kw)

    roomy = choose(whole // mb + 1)
    assert (roomy.rows_per_forward, roomy.rows_reason, roomy.reason) == (None, "fits", "fits")
    tight = choose((whole + one) // 2 // mb)  # only one row at a time fits
    assert (tight.rows_per_forward, tight.rows_reason) == (1, "over_budget")
    assert (tight.gradient_checkpointing, tight.reason) == (False, "fits")
    tighter = choose(one // mb - 1)  # not even one row: checkpointing too
    assert tighter.rows_per_forward == 1 and tighter.gradient_checkpointing
