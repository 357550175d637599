"""Models whose forward changes the LM head's logits score the same log-probs through the
chunked head as through their own forward; unknown changes are refused."""

from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaForCausalLM

from clo.encoding import collate, encode_quads
from clo.errors import CloError
from clo.logit_transform import IDENTITY, LogitTransform, configured_transform
from clo.logprobs import sequence_logprobs, token_logprobs
from clo.pairs import Quadruple
from clo.trainable import apply_trainable
from clo.trainer import train
from tests.clo.tiny_archs import build_tiny
from tests.support.threads import one_torch_thread  # noqa: F401  (autouse)

QUADS = [
    Quadruple(
        "How do I boil an egg?",
        "Boil it for seven minutes.",
        "Wie koche ich ein Ei?",
        "Koche es sieben Minuten lang in Wasser.",
    ),
    Quadruple("Name a colour.", "Blue.", "Nenne eine Farbe.", "Blau."),
]
# Small caps/scales and a sharpened head, so the transform changes tiny random logits a lot
ARCHS = {
    "gemma2": dict(head_dim=16, num_key_value_heads=2, final_logit_softcapping=3.0),
    "cohere": dict(num_key_value_heads=2, logit_scale=0.25),
    "granite": dict(num_key_value_heads=2, logits_scaling=4.0),
}


@pytest.fixture(scope="module", params=sorted(ARCHS))
def transformed(request: pytest.FixtureRequest, tiny_qwen2: Path, tmp_path_factory) -> Path:
    path = build_tiny(
        tmp_path_factory.mktemp(request.param), tiny_qwen2, request.param, **ARCHS[request.param]
    )
    model = AutoModelForCausalLM.from_pretrained(path)
    with torch.no_grad():
        model.get_output_embeddings().weight.mul_(40.0)  # logits of several nats
    model.save_pretrained(path)
    return path


def _batch(path: Path):  # type: ignore[no-untyped-def]
    tok = AutoTokenizer.from_pretrained(path)
    encoded, _ = encode_quads(tok, QUADS, 128, 64)
    return collate([s for g in encoded for s in g], tok.pad_token_id)


def _own_forward(model, batch) -> torch.Tensor:  # type: ignore[no-untyped-def]
    """Summed response log-probs from the model's own forward (its logits, transformed)."""
    logits = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits
    logp = torch.log_softmax(logits[:, :-1].float(), dim=-1)
    tok = torch.gather(logp, 2, batch.input_ids[:, 1:, None]).squeeze(2)
    return (tok * batch.response_mask[:, 1:]).sum(1)


def test_the_config_names_the_transform(transformed: Path) -> None:
    model = AutoModelForCausalLM.from_pretrained(transformed)
    want = {
        "gemma2": LogitTransform(softcap=3.0),
        "cohere": LogitTransform(scale=0.25),
        "granite": LogitTransform(scale=0.25),
    }[model.config.model_type]
    assert configured_transform(model.config) == want


@pytest.mark.parametrize("trainable", ["none", "attention", "full"])
def test_chunked_head_matches_the_models_own_forward(transformed: Path, trainable: str) -> None:
    model = AutoModelForCausalLM.from_pretrained(transformed)
    if trainable != "none":  # attention: the fused frozen-head path; full: checkpointed chunks
        model = apply_trainable(model, type("C", (), {"trainable": trainable})())
    batch = _batch(transformed)
    args = (batch.input_ids, batch.attention_mask, batch.response_mask)
    weights = torch.linspace(-1.0, 2.0, batch.input_ids.shape[0])
    with torch.no_grad():
        untransformed = token_logprobs(  # what the chunked head scored before: far off
            model.get_output_embeddings(),
            model.get_decoder()(input_ids=batch.input_ids).last_hidden_state[0, :4],
            batch.input_ids[0, 1:5],
            transform=IDENTITY,
        )
    got, _ = sequence_logprobs(model, *args, chunk_tokens=7)
    want = _own_forward(model, batch)
    torch.testing.assert_close(got, want, rtol=0, atol=1e-4)
    with torch.no_grad():
        theirs = torch.log_softmax(model(input_ids=batch.input_ids).logits[0, :4].float(), -1)
    assert (untransformed - theirs.gather(1, batch.input_ids[0, 1:5, None])[:, 0]).abs().max() > 0.1
    if trainable == "none":
        return
    (got * weights).sum().backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}
    model.zero_grad(set_to_none=True)
    (want * weights).sum().backward()
    for name, p in model.named_parameters():
        if p.requires_grad:
            scale = float(p.grad.abs().max())  # the sharpened head makes gradients large
            torch.testing.assert_close(grads[name], p.grad, rtol=1e-4, atol=1e-5 * scale, msg=name)


def test_reference_pass_and_training_pass_agree_bit_for_bit(transformed: Path) -> None:
    """With the transform on, step 0 of training still scores what the reference scored."""
    batch = _batch(transformed)
    args = (batch.input_ids, batch.attention_mask, batch.response_mask, 8)
    for trainable in ("attention", "full"):
        model = apply_trainable(
            AutoModelForCausalLM.from_pretrained(transformed),
            type("C", (), {"trainable": trainable})(),
        )
        with torch.no_grad():
            reference, _ = sequence_logprobs(model, *args)
        training, _ = sequence_logprobs(model, *args)
        assert torch.equal(reference, training.detach()), trainable


def test_a_soft_capped_model_trains(transformed: Path, tmp_path: Path) -> None:
    from clo.config import TrainConfig

    model = AutoModelForCausalLM.from_pretrained(transformed)
    tok = AutoTokenizer.from_pretrained(transformed)
    cfg = TrainConfig(max_steps=2, batch_size=2, max_length=64, max_prompt_length=32)
    events: list[dict] = []
    train(model, tok, QUADS, cfg, tmp_path, progress=events.append)
    assert events[0]["margin_en"] == pytest.approx(0.0, abs=1e-4)  # reference == policy


class TripledLogits(LlamaForCausalLM):
    """A forward that changes the logits in a way no config field describes."""

    def forward(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        out = super().forward(*args, **kwargs)
        out.logits = out.logits * 3.0
        return out


def test_an_unknown_logit_change_is_refused(tiny_llama: Path) -> None:
    model = TripledLogits.from_pretrained(tiny_llama)
    batch = _batch(tiny_llama)
    with pytest.raises(CloError, match="changes the LM head's logits"):
        sequence_logprobs(model, batch.input_ids, batch.attention_mask, batch.response_mask)
