"""Pure loss functions: per-sequence summed log-probs in, losses and metrics out.

No model access here, so every formula is unit-testable on small hand-computed numbers.
Sequence columns follow clo.encoding.SEQUENCE_NAMES: (x_en,y_en), (x_en,y_tgt),
(x_tgt,y_tgt), (x_tgt,y_en). The two CLO preference pairs are
  en  direction: prompt x_en,  chosen y_en  (col EN_EN),   rejected y_tgt (col EN_TGT)
  tgt direction: prompt x_tgt, chosen y_tgt (col TGT_TGT), rejected y_en  (col TGT_EN)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from clo.encoding import EN_EN, EN_TGT, TGT_EN, TGT_TGT

PAIRS = {"en": (EN_EN, EN_TGT), "tgt": (TGT_TGT, TGT_EN)}


@dataclass
class DpoOutput:
    """Per-example DPO losses and implicit rewards (β·(log π − log π_ref))."""

    losses: torch.Tensor
    chosen_rewards: torch.Tensor
    rejected_rewards: torch.Tensor

    @property
    def loss(self) -> torch.Tensor:
        return self.losses.mean()

    @property
    def margins(self) -> torch.Tensor:
        return self.chosen_rewards - self.rejected_rewards


def dpo_loss(
    policy_chosen: torch.Tensor,
    policy_rejected: torch.Tensor,
    ref_chosen: torch.Tensor,
    ref_rejected: torch.Tensor,
    beta: float,
    loss_type: str = "sigmoid",
) -> DpoOutput:
    """DPO on summed log-probs; h = (π_c − ref_c) − (π_r − ref_r).

    sigmoid: −log σ(β·h) (DPO paper); ipo: (h − 1/(2β))² (IPO paper, on summed log-probs here);
    hinge: max(0, 1 − β·h) (SLiC).
    """
    chosen_logratio = policy_chosen - ref_chosen
    rejected_logratio = policy_rejected - ref_rejected
    h = chosen_logratio - rejected_logratio
    if loss_type == "sigmoid":
        losses = -F.logsigmoid(beta * h)
    elif loss_type == "ipo":
        losses = (h - 1.0 / (2.0 * beta)) ** 2
    elif loss_type == "hinge":
        losses = torch.relu(1.0 - beta * h)
    else:
        raise ValueError(f"unknown preference loss {loss_type!r}: use sigmoid, ipo or hinge")
    return DpoOutput(
        losses=losses,
        chosen_rewards=beta * chosen_logratio.detach(),
        rejected_rewards=beta * rejected_logratio.detach(),
    )


@dataclass(frozen=True)
class StepTotals:
    """Denominators of one optimizer step, over all its accumulated micro-batches.

    With them each micro-batch's loss is its share of the step's loss: the NLL is the token
    mean over every response token of the step (not a mean of per-micro-batch means, which
    would weight a token by the size of its micro-batch), the preference term the mean over
    every example; the shares' gradients add up to the gradient of the whole batch.
    """

    nll_tokens: int
    examples: int


def token_mean_nll(
    logps: torch.Tensor, tokens: torch.Tensor, total_tokens: int | None = None
) -> torch.Tensor:
    """NLL summed over these sequences' response tokens, divided by `total_tokens` (default:
    their own count, i.e. the token mean); summed log-probs in."""
    if total_tokens is None:
        return -logps.sum() / tokens.sum().clamp(min=1)
    return -logps.sum() / max(total_tokens, 1)


def nll_columns(english_nll: bool) -> tuple[int, ...]:
    """The sequence columns the CLO NLL term trains on (target only, unless the ablation)."""
    return (TGT_TGT, EN_EN) if english_nll else (TGT_TGT,)


@dataclass
class LossOutput:
    """The scalar to backpropagate plus detached components for logging."""

    loss: torch.Tensor
    nll: torch.Tensor
    cl: torch.Tensor | None = None  # None: no preference term was computed (plain SFT)
    pairs: dict[str, DpoOutput] = field(default_factory=dict)

    def metrics(self) -> dict[str, float]:
        out = {"loss": float(self.loss.detach()), "nll": float(self.nll)}
        if self.cl is not None:
            out["cl_loss"] = float(self.cl)
        for name, d in self.pairs.items():
            out[f"margin_{name}"] = float(d.margins.mean())
            out[f"accuracy_{name}"] = float((d.margins > 0).float().mean())
        return out


def _pairs(
    policy: torch.Tensor, ref: torch.Tensor, beta: float, loss_type: str
) -> dict[str, DpoOutput]:
    return {
        name: dpo_loss(policy[:, c], policy[:, r], ref[:, c], ref[:, r], beta, loss_type)
        for name, (c, r) in PAIRS.items()
    }


def nll_term(
    policy: torch.Tensor,
    tokens: torch.Tensor,
    columns: tuple[int, ...],
    total_tokens: int | None = None,
) -> torch.Tensor:
    """Token-mean NLL over the chosen sequence columns (over `total_tokens` when given)."""
    cols = list(columns)
    return token_mean_nll(policy[:, cols], tokens[:, cols], total_tokens)


def clo_loss(
    policy: torch.Tensor,
    ref: torch.Tensor,
    tokens: torch.Tensor,
    totals: StepTotals | None = None,
    *,
    lam: float = 0.5,
    beta: float = 0.1,
    loss_type: str = "sigmoid",
    english_nll: bool = False,
) -> LossOutput:
    """L = λ·NLL(y_tgt | x_tgt) + (1−λ)·mean(DPO_en, DPO_tgt); inputs are [batch, 4].

    `english_nll` (ablation only) also puts y_en | x_en into the NLL term. With `totals` the
    result is this micro-batch's share of the step's loss (see StepTotals).
    """
    pairs = _pairs(policy, ref, beta, loss_type)
    examples = totals.examples if totals is not None else policy.shape[0]
    cl = 0.5 * (pairs["en"].losses.sum() + pairs["tgt"].losses.sum()) / examples
    nll_tokens = totals.nll_tokens if totals is not None else None
    nll = nll_term(policy, tokens, nll_columns(english_nll), nll_tokens)
    return LossOutput(
        loss=lam * nll + (1.0 - lam) * cl, nll=nll.detach(), cl=cl.detach(), pairs=pairs
    )


SFT_COLUMNS = {"target": (TGT_TGT,), "english": (EN_EN,), "both": (TGT_TGT, EN_EN)}


def sft_loss(
    policy: torch.Tensor,
    ref: torch.Tensor | None,
    tokens: torch.Tensor,
    totals: StepTotals | None = None,
) -> LossOutput:
    """Plain SFT: token-mean NLL over every sequence given (share of the step with `totals`).

    The trainer forwards only the trained responses (SFT_COLUMNS of the variant), so `policy`
    and `tokens` hold just those columns and no reference is needed; preference metrics of an
    SFT model come from the held-out evaluation instead of every step.
    """
    nll = token_mean_nll(policy, tokens, totals.nll_tokens if totals is not None else None)
    return LossOutput(loss=nll, nll=nll.detach())


# A loss with its hyper-parameters (and step totals) bound: (policy, ref, tokens) -> output.
LossFn = Callable[[torch.Tensor, torch.Tensor | None, torch.Tensor], LossOutput]
