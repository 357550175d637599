"""Held-out preference accuracy, implicit DPO reward margins and held-out NLL / perplexity.

For each held-out quadruple the two CLO pairs (METHOD.md) are scored: English prompt
(chosen y_en, rejected y_tgt) and target prompt (chosen y_tgt, rejected y_en). The reward
of a response is β·(log π(y|x) − log π_ref(y|x)), log-probs summed over response tokens.
A pair counts as correct when the chosen reward is strictly larger (TRL's
rewards/accuracies), so an untrained policy equal to its reference scores 0.
"""

from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from clo.evaluate.report import DirectionStats, NllStats, PreferenceReport, ReferenceKind
from clo.evaluate.scoring import SequenceScore, score_texts
from clo.pairs import PreferencePair, Quadruple, preference_pairs

logger = logging.getLogger(__name__)

# Precomputed reference log-probs: (prompt, response) -> summed response log-prob.
ReferenceLogps = Mapping[tuple[str, str], float]


def _is_peft(model: Any) -> bool:
    return hasattr(model, "disable_adapter") and hasattr(model, "peft_config")


@contextlib.contextmanager
def _adapter_disabled(model: Any) -> Iterator[Any]:
    with model.disable_adapter():
        yield model


def reference_kind(model: Any, reference: Any) -> ReferenceKind:
    """Which reference the rewards are measured against."""
    if reference is None:
        return "adapter_disabled" if _is_peft(model) else "none"
    if isinstance(reference, Mapping):
        return "precomputed"
    return "model"


def _pairs(heldout: Sequence[Quadruple]) -> list[PreferencePair]:
    return [pair for q in heldout for pair in preference_pairs(q)]


def _sequences(pairs: Sequence[PreferencePair]) -> list[tuple[str, str]]:
    """Unique (prompt, response) sequences in first-seen order."""
    seen: dict[tuple[str, str], None] = {}
    for p in pairs:
        seen.setdefault((p.prompt, p.chosen), None)
        seen.setdefault((p.prompt, p.rejected), None)
    return list(seen)


def _score(
    model: Any,
    tokenizer: Any,
    seqs: Sequence[tuple[str, str]],
    batch_size: int,
    max_length: int,
    max_prompt_length: int,
) -> dict[tuple[str, str], SequenceScore]:
    scores = score_texts(
        model,
        tokenizer,
        [s[0] for s in seqs],
        [s[1] for s in seqs],
        batch_size=batch_size,
        max_length=max_length,
        max_prompt_length=max_prompt_length,
    )
    return dict(zip(seqs, scores, strict=True))


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values)


def _direction_stats(
    direction: str,
    pairs: Sequence[PreferencePair],
    policy: Mapping[tuple[str, str], SequenceScore],
    reference: Mapping[tuple[str, str], float] | None,
    beta: float,
) -> DirectionStats:
    chosen = [policy[(p.prompt, p.chosen)].logprob for p in pairs]
    rejected = [policy[(p.prompt, p.rejected)].logprob for p in pairs]
    stats: dict[str, Any] = {
        "direction": direction,
        "n": len(pairs),
        "logp_accuracy": _mean([float(c > r) for c, r in zip(chosen, rejected, strict=True)]),
        "chosen_logp_mean": _mean(chosen),
        "rejected_logp_mean": _mean(rejected),
        "accuracy": None,
        "reward_margin_mean": None,
        "chosen_reward_mean": None,
        "rejected_reward_mean": None,
    }
    if reference is not None:
        c_rew = [
            beta * (c - reference[(p.prompt, p.chosen)]) for c, p in zip(chosen, pairs, strict=True)
        ]
        r_rew = [
            beta * (r - reference[(p.prompt, p.rejected)])
            for r, p in zip(rejected, pairs, strict=True)
        ]
        margins = [c - r for c, r in zip(c_rew, r_rew, strict=True)]
        stats.update(
            accuracy=_mean([float(m > 0) for m in margins]),
            reward_margin_mean=_mean(margins),
            chosen_reward_mean=_mean(c_rew),
            rejected_reward_mean=_mean(r_rew),
        )
    return DirectionStats(**stats)


def _nll(scores: Sequence[SequenceScore]) -> NllStats:
    tokens = sum(s.tokens for s in scores)
    nll = -sum(s.logprob for s in scores) / max(tokens, 1)
    return NllStats(
        sequences=len(scores), tokens=tokens, nll=nll, perplexity=math.exp(min(nll, 700.0))
    )


@dataclass(frozen=True)
class PreferenceScores:
    """The policy's and the reference's scores of every held-out sequence."""

    kind: ReferenceKind
    policy: dict[tuple[str, str], SequenceScore]
    reference: dict[tuple[str, str], float] | None  # summed log-probs; None: no reference


def preference_report(
    model: Any,
    tokenizer: Any,
    heldout: Sequence[Quadruple],
    beta: float = 0.1,
    reference: Any = None,
    batch_size: int = 8,
    max_length: int = 1024,
    max_prompt_length: int = 512,
) -> PreferenceReport:
    """Preference accuracy and reward margins per direction, plus held-out NLL.

    `reference`: None (a PEFT model is compared with its adapter disabled; any other model
    gets policy-only numbers), a separately loaded reference model sharing the tokenizer,
    or precomputed reference log-probs keyed by (prompt, response).
    """
    scores = score_preference(
        model, tokenizer, heldout, reference, batch_size, max_length, max_prompt_length
    )
    return report_from_scores(heldout, scores, beta)


def score_preference(
    model: Any,
    tokenizer: Any,
    heldout: Sequence[Quadruple],
    reference: Any = None,
    batch_size: int = 8,
    max_length: int = 1024,
    max_prompt_length: int = 512,
) -> PreferenceScores:
    """Score every held-out sequence with the policy and its reference (see preference_report)."""
    if not heldout:
        raise ValueError("preference_report needs at least one held-out quadruple")
    seqs = _sequences(_pairs(heldout))
    policy = _score(model, tokenizer, seqs, batch_size, max_length, max_prompt_length)
    kind = reference_kind(model, reference)
    ref_logps: dict[tuple[str, str], float] | None
    if kind == "adapter_disabled":
        with _adapter_disabled(model):
            ref_scores = _score(model, tokenizer, seqs, batch_size, max_length, max_prompt_length)
        ref_logps = {k: v.logprob for k, v in ref_scores.items()}
    elif kind == "model":
        ref_scores = _score(reference, tokenizer, seqs, batch_size, max_length, max_prompt_length)
        ref_logps = {k: v.logprob for k, v in ref_scores.items()}
    elif kind == "precomputed":
        missing = [s for s in seqs if s not in reference]
        if missing:
            raise ValueError(
                f"precomputed reference log-probs lack {len(missing)} held-out sequence(s), "
                f"e.g. prompt {missing[0][0][:60]!r}; compute them on the same held-out set"
            )
        ref_logps = {s: float(reference[s]) for s in seqs}
    else:
        ref_logps = None
        logger.info("no reference model: reporting policy log-prob accuracy only")
    return PreferenceScores(kind=kind, policy=policy, reference=ref_logps)


def report_from_scores(
    heldout: Sequence[Quadruple], scores: PreferenceScores, beta: float = 0.1
) -> PreferenceReport:
    """The preference section from already computed scores."""
    pairs = _pairs(heldout)
    policy, ref_logps, kind = scores.policy, scores.reference, scores.kind
    directions = {
        d: _direction_stats(d, [p for p in pairs if p.direction == d], policy, ref_logps, beta)
        for d in ("en", "tgt")
    }
    nll = {
        "target": _nll([policy[(q.x_tgt, q.y_tgt)] for q in heldout]),
        "english": _nll([policy[(q.x_en, q.y_en)] for q in heldout]),
    }
    return PreferenceReport(beta=beta, reference=kind, directions=directions, nll=nll)
