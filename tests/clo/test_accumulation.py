"""Gradient accumulation: micro-batches of one step give the gradient of the whole batch."""

from pathlib import Path

import pytest
import torch
from torch.optim.optimizer import register_optimizer_step_pre_hook
from transformers import AutoModelForCausalLM, AutoTokenizer

from clo.config import TrainConfig
from clo.pairs import Quadruple
from clo.trainer import train
from tests.support.threads import one_torch_thread  # noqa: F401  (autouse)

# responses of very different lengths, so a mean of per-micro-batch token means is not the
# token mean of the whole batch
QUADS = [
    Quadruple(
        f"Question {i}: tell me about {i}.",
        f"Answer {i}." + " It is a number." * (3 * i),
        f"Frage {i}: Erzähl mir von {i}.",
        f"Antwort {i}." + " Es ist eine Zahl." * (5 * (3 - i)),
    )
    for i in range(4)
]


def first_step_gradients(path: Path, workdir: Path, **kw: object) -> dict[str, torch.Tensor]:
    """The gradient the optimizer sees at step 0 (no clipping), per trainable parameter."""
    model = AutoModelForCausalLM.from_pretrained(path)
    tok = AutoTokenizer.from_pretrained(path)
    names = {}
    grads: dict[str, torch.Tensor] = {}

    def capture(optimizer: torch.optim.Optimizer, *_: object) -> None:
        if not grads:
            for group in optimizer.param_groups:
                for p in group["params"]:
                    grads[names[id(p)]] = p.grad.detach().clone()

    cfg = TrainConfig(
        max_steps=1,
        max_length=128,
        max_prompt_length=32,
        group_by_length=False,  # the same order whatever the micro-batch size
        max_grad_norm=None,
        **kw,
    )
    names.update({id(p): n for n, p in model.named_parameters()})
    hook = register_optimizer_step_pre_hook(capture)
    try:
        train(model, tok, QUADS, cfg, workdir)
    finally:
        hook.remove()
    return grads


@pytest.mark.parametrize("method", ["clo", "sft"])
def test_accumulated_gradient_equals_the_whole_batch(
    tiny_qwen2: Path, tmp_path: Path, method: str
) -> None:
    whole = first_step_gradients(tiny_qwen2, tmp_path / "a", method=method, batch_size=4)
    accumulated = first_step_gradients(
        tiny_qwen2, tmp_path / "b", method=method, batch_size=2, grad_accum=2
    )
    assert whole.keys() == accumulated.keys() and whole
    for name, grad in whole.items():
        torch.testing.assert_close(accumulated[name], grad, rtol=1e-4, atol=1e-7, msg=name)
