"""A short CLO run on real German parallel data must teach both preference directions.

Held-out metrics (clo.trainer.preference_metrics), on examples never trained on:
- token_accuracy_*: the model gives the answer in the prompt's language a higher mean
  per-token log-prob than the same answer in the other language (absolute; the base model
  sits near chance);
- reward_accuracy_*: the same for DPO's implicit reward, relative to the base model
  (chance = 0.5 by construction).
Target-only SFT must drift: its English-direction reward accuracy ends far below CLO's.
"""

from pathlib import Path

from transformers import AutoModelForCausalLM, AutoTokenizer

from clo.config import TrainConfig
from clo.pairs import split_heldout
from clo.seed import builtin_parallel
from clo.trainer import preference_metrics, train
from tests.support.threads import one_torch_thread  # noqa: F401  (autouse)

LENGTHS = dict(max_length=96, max_prompt_length=48)


def run(path: Path, workdir: Path, method: str, train_q, heldout_q) -> tuple[dict, dict]:
    model = AutoModelForCausalLM.from_pretrained(path)
    tok = AutoTokenizer.from_pretrained(path)
    base = preference_metrics(model, tok, heldout_q, **LENGTHS)
    cfg = TrainConfig(
        method=method,
        sft_variant="target",
        trainable="attention",
        learning_rate=1e-2,
        max_steps=50,
        batch_size=8,
        seed=0,
        **LENGTHS,
    )
    result = train(model, tok, train_q, cfg, workdir)
    after = preference_metrics(result.model, tok, heldout_q, reference=base["logps"], **LENGTHS)
    return base, after


def test_clo_learns_both_directions_and_sft_drifts(tiny_qwen2: Path, tmp_path: Path) -> None:
    quads = builtin_parallel("de")
    assert len(quads) >= 100
    train_q, heldout_q = split_heldout(quads, size=24, seed=0)

    base, clo = run(tiny_qwen2, tmp_path / "clo", "clo", train_q, heldout_q)
    for d in ("en", "tgt"):
        floor = max(0.7, base[f"token_accuracy_{d}"] + 0.15)
        assert clo[f"token_accuracy_{d}"] >= floor, (d, base, clo)
        assert clo[f"reward_accuracy_{d}"] >= 0.75, (d, clo)

    _, sft = run(tiny_qwen2, tmp_path / "sft", "sft", train_q, heldout_q)
    # SFT on German answers pulls English prompts toward German too
    assert sft["reward_accuracy_en"] <= 0.5, sft
    assert sft["reward_accuracy_en"] <= clo["reward_accuracy_en"] - 0.3, (sft, clo)
    assert sft["token_accuracy_en"] < clo["token_accuracy_en"] - 0.3, (sft, clo)
    assert sft["reward_accuracy_tgt"] > 0.5  # it did learn German where German was asked
