"""Held-out preference accuracy, reward margins and NLL against each kind of reference."""

import copy
import math

import pytest
import torch
from peft import LoraConfig, get_peft_model

from clo.evaluate.preference import preference_report
from clo.evaluate.scoring import score_texts
from clo.pairs import Quadruple
from clo.seed import builtin_parallel


@pytest.fixture(scope="module")
def heldout():
    return builtin_parallel("de")[:3]


@pytest.fixture(scope="module")
def lora_model(qwen2_loaded):
    model, tokenizer = qwen2_loaded
    torch.manual_seed(2)
    peft = get_peft_model(
        copy.deepcopy(model),
        LoraConfig(
            r=4, lora_alpha=16, init_lora_weights=False, target_modules=["q_proj", "v_proj"]
        ),
    )
    return peft.eval(), tokenizer


def _all_sequences(heldout):
    return (
        [(q.x_en, q.y_en) for q in heldout]
        + [(q.x_en, q.y_tgt) for q in heldout]
        + [(q.x_tgt, q.y_tgt) for q in heldout]
        + [(q.x_tgt, q.y_en) for q in heldout]
    )


def test_policy_equal_to_reference_has_zero_margins(qwen2_loaded, heldout):
    model, tokenizer = qwen2_loaded
    report = preference_report(model, tokenizer, heldout, reference=model)
    assert report.reference == "model"
    for stats in report.directions.values():
        assert stats.reward_margin_mean == 0.0 and stats.chosen_reward_mean == 0.0
        assert stats.accuracy == 0.0  # strictly greater is required, as in TRL


def test_adapter_disabled_reference_matches_precomputed_base_logps(
    lora_model, qwen2_loaded, heldout
):
    model, tokenizer = lora_model
    base, _ = qwen2_loaded
    seqs = _all_sequences(heldout)
    base_scores = score_texts(base, tokenizer, [s[0] for s in seqs], [s[1] for s in seqs])
    precomputed = {s: sc.logprob for s, sc in zip(seqs, base_scores, strict=True)}

    auto = preference_report(model, tokenizer, heldout, beta=0.5)
    given = preference_report(model, tokenizer, heldout, beta=0.5, reference=precomputed)
    assert (auto.reference, given.reference) == ("adapter_disabled", "precomputed")
    policy = {
        s: sc.logprob
        for s, sc in zip(
            seqs,
            score_texts(model, tokenizer, [s[0] for s in seqs], [s[1] for s in seqs]),
            strict=True,
        )
    }
    margins = [
        0.5
        * (
            (policy[(q.x_tgt, q.y_tgt)] - precomputed[(q.x_tgt, q.y_tgt)])
            - (policy[(q.x_tgt, q.y_en)] - precomputed[(q.x_tgt, q.y_en)])
        )
        for q in heldout
    ]
    for report in (auto, given):
        tgt = report.directions["tgt"]
        assert tgt.reward_margin_mean == pytest.approx(sum(margins) / 3, abs=1e-4)
        assert tgt.accuracy == pytest.approx(sum(m > 0 for m in margins) / 3)
    assert auto.directions["tgt"].reward_margin_mean != 0.0  # the adapter changed the model


def test_precomputed_reference_decides_the_sign(qwen2_loaded, heldout):
    model, tokenizer = qwen2_loaded
    seqs = _all_sequences(heldout)
    policy = score_texts(model, tokenizer, [s[0] for s in seqs], [s[1] for s in seqs])
    # a reference that liked every rejected response more than the policy does
    chosen = {(q.x_en, q.y_en) for q in heldout} | {(q.x_tgt, q.y_tgt) for q in heldout}
    ref = {
        s: sc.logprob + (0.0 if s in chosen else 5.0) for s, sc in zip(seqs, policy, strict=True)
    }
    report = preference_report(model, tokenizer, heldout, beta=0.1, reference=ref)
    for stats in report.directions.values():
        assert stats.accuracy == 1.0
        assert stats.reward_margin_mean == pytest.approx(0.5, abs=1e-4)
    with pytest.raises(ValueError, match="lack"):
        preference_report(model, tokenizer, heldout, reference=dict(list(ref.items())[:2]))


def test_nll_is_token_mean_over_target_responses(qwen2_loaded):
    model, tokenizer = qwen2_loaded
    q = Quadruple("Say hi.", "Hi there, friend.", "Sag hallo.", "Hallo, mein Freund.")
    report = preference_report(model, tokenizer, [q])
    (score,) = score_texts(model, tokenizer, [q.x_tgt], [q.y_tgt])
    assert report.nll["target"].tokens == score.tokens
    assert report.nll["target"].nll == pytest.approx(-score.logprob / score.tokens)
    assert report.nll["target"].perplexity == pytest.approx(math.exp(report.nll["target"].nll))
    assert report.directions["en"].accuracy is None  # no reference for a plain model
    assert report.directions["tgt"].logp_accuracy in (0.0, 1.0)
