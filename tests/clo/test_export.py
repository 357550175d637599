"""Exported adapters reload with stock PEFT, merged models with stock transformers."""

import json
from pathlib import Path

import pytest
import torch
from peft import PeftModel
from safetensors import safe_open
from transformers import AutoModelForCausalLM, AutoTokenizer

from clo.config import TrainConfig
from clo.encoding import collate, encode_quads
from clo.errors import CloError
from clo.export import export_adapter, export_merged
from clo.logprobs import sequence_logprobs
from clo.pairs import Quadruple
from clo.trainer import train
from tests.support.threads import one_torch_thread  # noqa: F401  (autouse)

QUADS = [
    Quadruple(
        f"Question {i}: name a fruit.",
        f"Apple number {i}.",
        f"Frage {i}: Nenne eine Frucht.",
        f"Apfel Nummer {i}.",
    )
    for i in range(4)
]
META = dict(
    base_model="tiny/qwen2", base_revision="abc123", data_hash="f" * 64, metrics={"loss": 0.5}
)


def logps(model, tok) -> torch.Tensor:
    encoded, _ = encode_quads(tok, QUADS, 64, 32)
    batch = collate([s for g in encoded for s in g], tok.pad_token_id)
    with torch.no_grad():
        return sequence_logprobs(model, batch.input_ids, batch.attention_mask, batch.response_mask)[
            0
        ]


@pytest.fixture(scope="module", params=["attention", "lora"])
def trained(request: pytest.FixtureRequest, tiny_qwen2: Path, tmp_path_factory):
    cfg = TrainConfig(
        trainable=request.param,
        max_steps=3,
        batch_size=4,
        max_length=64,
        max_prompt_length=32,
        learning_rate=2e-2,
        lora_r=4,
        lora_alpha=8,
    )
    model = AutoModelForCausalLM.from_pretrained(tiny_qwen2)
    tok = AutoTokenizer.from_pretrained(tiny_qwen2)
    result = train(model, tok, QUADS, cfg, tmp_path_factory.mktemp("work"))
    return result.model, tok, cfg


def test_adapter_reloads_with_stock_peft(trained, tiny_qwen2: Path, tmp_path: Path) -> None:
    model, tok, cfg = trained
    sums = export_adapter(model, tok, tmp_path / "adapter", config=cfg, **META)
    out = tmp_path / "adapter"
    assert {
        "adapter_config.json",
        "adapter_model.safetensors",
        "README.md",
        "training_config.json",
        "clo_metadata.json",
        "tokenizer.json",
    } <= set(sums)
    assert not list(out.glob("*.bin")) and not list(out.glob("*.pt"))  # safetensors only
    base = AutoModelForCausalLM.from_pretrained(tiny_qwen2)
    base_logps = logps(base, tok)
    reloaded = PeftModel.from_pretrained(base, str(out))
    want = logps(model, tok)
    assert (want - base_logps).abs().max() > 1e-3  # training changed something
    torch.testing.assert_close(logps(reloaded, tok), want, rtol=1e-5, atol=1e-4)
    meta = json.loads((out / "clo_metadata.json").read_text())
    assert meta["base_revision"] == "abc123" and meta["data_hash"] == "f" * 64
    assert json.loads((out / "training_config.json").read_text())["trainable"] == cfg.trainable
    assert "tiny/qwen2" in (out / "README.md").read_text()
    import hashlib

    assert (
        sums["adapter_model.safetensors"]
        == hashlib.sha256((out / "adapter_model.safetensors").read_bytes()).hexdigest()
    )


def test_adapter_holds_only_attention_weights(trained, tmp_path: Path) -> None:
    model, tok, cfg = trained
    export_adapter(model, tok, tmp_path / "a", config=cfg, **META)
    with safe_open(str(tmp_path / "a" / "adapter_model.safetensors"), "pt") as f:
        keys = list(f.keys())
    assert keys and all(".self_attn." in k for k in keys)
    if cfg.trainable == "lora":
        assert all("lora_" in k for k in keys)
    else:
        assert len(keys) == 4 * 2 + 3 * 2  # q/k/v/o weights + q/k/v biases, 2 layers


def test_merged_model_loads_with_stock_transformers(trained, tmp_path: Path) -> None:
    model, tok, cfg = trained
    want = logps(model, tok)
    export_merged(model, tok, tmp_path / "merged", config=cfg, **META)
    merged = AutoModelForCausalLM.from_pretrained(tmp_path / "merged")
    assert not hasattr(merged, "peft_config")
    torch.testing.assert_close(logps(merged, tok), want, rtol=1e-5, atol=1e-4)
    torch.testing.assert_close(logps(model, tok), want)  # the trained model is left unmerged


def test_full_training_has_no_adapter(tiny_qwen2: Path, tmp_path: Path) -> None:
    model = AutoModelForCausalLM.from_pretrained(tiny_qwen2)
    tok = AutoTokenizer.from_pretrained(tiny_qwen2)
    with pytest.raises(CloError, match="export_merged"):
        export_adapter(model, tok, tmp_path / "x", config=TrainConfig(trainable="full"), **META)
    assert not (tmp_path / "x").exists()
