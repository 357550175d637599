"""Loss functions against values computed by hand (closed forms written next to each number)."""

import math

import pytest
import torch

from clo.loss import SFT_COLUMNS, clo_loss, dpo_loss, sft_loss, token_mean_nll


def _t(*xs: float) -> torch.Tensor:
    return torch.tensor(xs, dtype=torch.float64)


# policy chosen/rejected and reference chosen/rejected; h = (pc - rc) - (pr - rr)
# example 0: h = (-1 + 2) - (-3 + 2) = 2 ; example 1: h = (-4 + 3) - (-2 + 3) = -2
PC, PR, RC, RR = _t(-1.0, -4.0), _t(-3.0, -2.0), _t(-2.0, -3.0), _t(-2.0, -3.0)


def test_dpo_sigmoid_closed_form() -> None:
    out = dpo_loss(PC, PR, RC, RR, beta=0.5, loss_type="sigmoid")
    # -log σ(β h) = log(1 + exp(-β h)): β h = 1 and -1
    assert out.losses.tolist() == pytest.approx([math.log1p(math.exp(-1)), math.log1p(math.e)])
    assert out.losses.tolist() == pytest.approx([0.3132617, 1.3132617], abs=1e-6)
    assert out.chosen_rewards.tolist() == pytest.approx([0.5, -0.5])  # β (pc - rc)
    assert out.rejected_rewards.tolist() == pytest.approx([-0.5, 0.5])
    assert out.margins.tolist() == pytest.approx([1.0, -1.0])
    assert float(out.loss) == pytest.approx((0.3132617 + 1.3132617) / 2, abs=1e-6)


def test_dpo_ipo_and_hinge_closed_form() -> None:
    ipo = dpo_loss(PC, PR, RC, RR, beta=0.5, loss_type="ipo")
    assert ipo.losses.tolist() == pytest.approx([1.0, 9.0])  # (h - 1/(2β))^2 = (2-1)^2, (-2-1)^2
    hinge = dpo_loss(PC, PR, RC, RR, beta=0.5, loss_type="hinge")
    assert hinge.losses.tolist() == pytest.approx([0.0, 2.0])  # max(0, 1 - β h)


def test_dpo_rejects_unknown_loss_type() -> None:
    with pytest.raises(ValueError, match="sigmoid, ipo or hinge"):
        dpo_loss(PC, PR, RC, RR, beta=0.1, loss_type="kto")


def test_dpo_gradient_pushes_chosen_up_and_rejected_down() -> None:
    pc, pr = _t(-5.0).requires_grad_(), _t(-5.0).requires_grad_()
    dpo_loss(pc, pr, _t(-5.0), _t(-5.0), beta=0.1).loss.backward()
    # d/dpc of -log σ(β h) at h=0 is -β/2
    assert float(pc.grad) == pytest.approx(-0.05)
    assert float(pr.grad) == pytest.approx(0.05)


# columns: (x_en,y_en) (x_en,y_tgt) (x_tgt,y_tgt) (x_tgt,y_en)
POLICY = _t(-10.0, -20.0, -12.0, -30.0)[None]
REF = _t(-11.0, -19.0, -15.0, -28.0)[None]
TOKENS = torch.tensor([[4, 10, 6, 15]])
# en pair: h = (-10+11) - (-20+19) = 2 -> log(1+e^-0.2) = 0.5981389
# tgt pair: h = (-12+15) - (-30+28) = 5 -> log(1+e^-0.5) = 0.4740770
CL = (0.5981389 + 0.4740770) / 2
NLL_TGT = 12 / 6  # target response only: -(-12) / 6 tokens


def test_clo_mix_with_lambda() -> None:
    out = clo_loss(POLICY, REF, TOKENS, lam=0.5, beta=0.1)
    assert float(out.cl) == pytest.approx(CL, abs=1e-6)
    assert float(out.nll) == pytest.approx(NLL_TGT)
    assert float(out.loss) == pytest.approx(0.5 * 2.0 + 0.5 * CL, abs=1e-6)
    out = clo_loss(POLICY, REF, TOKENS, lam=0.25, beta=0.1)
    assert float(out.loss) == pytest.approx(0.25 * 2.0 + 0.75 * CL, abs=1e-6)
    assert clo_loss(POLICY, REF, TOKENS, lam=0.0, beta=0.1).loss.item() == pytest.approx(CL, 1e-6)
    m = out.metrics()
    assert m["margin_en"] == pytest.approx(0.2) and m["margin_tgt"] == pytest.approx(0.5)
    assert m["accuracy_en"] == 1.0 and m["accuracy_tgt"] == 1.0


def test_english_nll_ablation_adds_english_response() -> None:
    out = clo_loss(POLICY, REF, TOKENS, lam=1.0, english_nll=True)
    assert float(out.loss) == pytest.approx((10 + 12) / (4 + 6))  # token mean over both


def test_clo_averages_over_examples_and_tokens() -> None:
    policy = torch.cat([POLICY, POLICY * 2])
    ref = torch.cat([REF, REF * 2])
    tokens = torch.cat([TOKENS, TOKENS])
    out = clo_loss(policy, ref, tokens, lam=1.0)
    assert float(out.loss) == pytest.approx((12 + 24) / 12)  # token mean, not sequence mean


def _sft_on(variant: str, policy: torch.Tensor = POLICY):
    # what the trainer does: forward only the variant's columns, no reference
    cols = list(SFT_COLUMNS[variant])
    return sft_loss(policy[:, cols], None, TOKENS[:, cols])


def test_sft_variants_pick_columns() -> None:
    assert float(_sft_on("target").loss) == pytest.approx(2.0)  # 12 / 6
    assert float(_sft_on("english").loss) == pytest.approx(2.5)  # 10 / 4
    assert float(_sft_on("both").loss) == pytest.approx(2.2)  # 22 / 10
    out = _sft_on("target").metrics()
    assert out == {"loss": pytest.approx(2.0), "nll": pytest.approx(2.0)}  # no preference term


def test_sft_gradient_is_the_token_mean() -> None:
    policy = POLICY.clone().requires_grad_()
    _sft_on("both", policy).loss.backward()
    assert policy.grad[0].tolist() == pytest.approx([-1 / 10, 0.0, -1 / 10, 0.0])


def test_token_mean_nll() -> None:
    assert float(token_mean_nll(_t(-3.0, -5.0), torch.tensor([1, 3]))) == pytest.approx(2.0)


def test_step_totals_make_micro_batch_shares_add_up_to_the_whole_batch() -> None:
    from clo.loss import StepTotals

    # two examples of unequal target lengths (6 and 2 tokens), one per micro-batch
    policy = torch.cat([POLICY, _t(-10.0, -20.0, -8.0, -30.0)[None]])
    ref = torch.cat([REF, REF])
    tokens = torch.cat([TOKENS, torch.tensor([[4, 10, 2, 15]])])
    whole = clo_loss(policy, ref, tokens, lam=1.0)
    assert float(whole.nll) == pytest.approx((12 + 8) / (6 + 2))  # 2.5, the token mean
    totals = StepTotals(nll_tokens=8, examples=2)
    shares = [
        clo_loss(policy[i : i + 1], ref[i : i + 1], tokens[i : i + 1], totals, lam=1.0)
        for i in (0, 1)
    ]
    assert [float(s.nll) for s in shares] == pytest.approx([12 / 8, 8 / 8])
    assert sum(float(s.loss) for s in shares) == pytest.approx(2.5)  # not (12/6 + 8/2) / 2 = 3
    # the preference term: each example's loss over the step's 2 examples
    mixed = [
        clo_loss(policy[i : i + 1], ref[i : i + 1], tokens[i : i + 1], totals, lam=0.0)
        for i in (0, 1)
    ]
    want = clo_loss(policy, ref, tokens, lam=0.0).loss
    assert sum(float(s.loss) for s in mixed) == pytest.approx(float(want))
    sft = [sft_loss(policy[i : i + 1, [2]], None, tokens[i : i + 1, [2]], totals) for i in (0, 1)]
    assert sum(float(s.loss) for s in sft) == pytest.approx(2.5)
