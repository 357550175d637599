"""Preference training runs the policy without dropout (as TRL does): deterministic log-probs,
equal to the reference's at step 0."""

from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from clo.config import TrainConfig
from clo.encoding import collate, encode_quads
from clo.logprobs import sequence_logprobs
from clo.pairs import Quadruple
from clo.trainable import disable_dropout
from clo.trainer import train
from tests.clo.tiny_archs import build_tiny
from tests.support.threads import one_torch_thread  # noqa: F401  (autouse)

QUADS = [
    Quadruple(
        f"Question {i}: what is {i} plus {i}?",
        f"It is {2 * i}, a small number.",
        f"Frage {i}: Was ist {i} plus {i}?",
        f"Es ist {2 * i}, eine kleine Zahl.",
    )
    for i in range(4)
]
# Qwen2 keeps its attention dropout as a float rate; Phi-3 also has nn.Dropout modules
DROPOUT = {
    "qwen2": dict(attention_dropout=0.5, num_key_value_heads=2),
    "phi3": dict(attention_dropout=0.3, resid_pdrop=0.3, embd_pdrop=0.3, num_key_value_heads=2),
}


@pytest.fixture(scope="module", params=sorted(DROPOUT))
def dropout_model(request: pytest.FixtureRequest, tiny_qwen2: Path, tmp_path_factory) -> Path:
    kind = request.param
    return build_tiny(tmp_path_factory.mktemp(kind), tiny_qwen2, kind, **DROPOUT[kind])


def _logps(model, tok) -> torch.Tensor:  # type: ignore[no-untyped-def]
    encoded, _ = encode_quads(tok, QUADS, 64, 32)
    batch = collate([s for g in encoded for s in g], tok.pad_token_id)
    with torch.no_grad():
        return sequence_logprobs(model, batch.input_ids, batch.attention_mask, batch.response_mask)[
            0
        ]


def test_disabled_dropout_makes_training_forwards_deterministic(dropout_model: Path) -> None:
    model = AutoModelForCausalLM.from_pretrained(dropout_model)
    tok = AutoTokenizer.from_pretrained(dropout_model)
    evaluated = _logps(model.eval(), tok)
    model.train()
    assert not torch.equal(_logps(model, tok), _logps(model, tok))  # the dropout is real
    assert disable_dropout(model) > 0
    first, second = _logps(model, tok), _logps(model, tok)
    assert model.training and torch.equal(first, second)
    torch.testing.assert_close(first, evaluated, rtol=0, atol=1e-5)


@pytest.mark.parametrize(("method", "first_preference_step"), [("dpo", 0), ("sft+dpo", 2)])
def test_preference_steps_start_at_margin_zero_despite_dropout(
    dropout_model: Path, tmp_path: Path, method: str, first_preference_step: int
) -> None:
    model = AutoModelForCausalLM.from_pretrained(dropout_model)
    tok = AutoTokenizer.from_pretrained(dropout_model)
    cfg = TrainConfig(
        method=method,
        trainable="full",  # every architecture here, fused attention or not
        max_steps=4,
        batch_size=2,
        max_length=64,
        max_prompt_length=32,
    )
    events: list[dict] = []
    train(model, tok, QUADS, cfg, tmp_path, progress=events.append)
    first = [e for e in events if "loss" in e][first_preference_step]
    assert first["phase"] == "dpo"
    # the policy in train mode scores what the reference scored in eval mode
    assert first["margin_en"] == pytest.approx(0.0, abs=1e-5)
    assert first["margin_tgt"] == pytest.approx(0.0, abs=1e-5)


def test_sft_keeps_the_models_dropout(dropout_model: Path, tmp_path: Path) -> None:
    model = AutoModelForCausalLM.from_pretrained(dropout_model)
    tok = AutoTokenizer.from_pretrained(dropout_model)
    rates = [m.attention_dropout for m in model.modules() if hasattr(m, "attention_dropout")]
    cfg = TrainConfig(
        method="sft",
        trainable="full",
        max_steps=1,
        batch_size=2,
        max_length=64,
        max_prompt_length=32,
    )
    train(model, tok, QUADS, cfg, tmp_path)
    assert [m.attention_dropout for m in model.modules() if hasattr(m, "attention_dropout")] == (
        rates
    )
