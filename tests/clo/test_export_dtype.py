"""Exported weights are written in the base model's own dtype by default (not the fp32 the
worker trains in), or in the dtype export_dtype names; the model card says which."""

import json
from pathlib import Path

import pytest
import torch
from peft import PeftModel
from safetensors import safe_open
from transformers import AutoModelForCausalLM, AutoTokenizer

from clo.config import TrainConfig
from clo.export import export_adapter, export_merged
from clo.pairs import Quadruple
from clo.trainer import train
from tests.support.threads import one_torch_thread  # noqa: F401  (autouse)

QUADS = [
    Quadruple(f"Question {i}?", f"Answer {i}.", f"Frage {i}?", f"Antwort {i}.") for i in range(4)
]
META = dict(base_model="tiny/bf16", base_revision=None, data_hash="0" * 64, metrics={})
SAFETENSORS_DTYPE = {"BF16": torch.bfloat16, "F32": torch.float32, "F16": torch.float16}


@pytest.fixture(scope="module")
def bf16_base(tiny_qwen2: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny Qwen2 as a model published in bfloat16 (its config.json says so)."""
    out = tmp_path_factory.mktemp("bf16")
    AutoModelForCausalLM.from_pretrained(tiny_qwen2).to(torch.bfloat16).save_pretrained(out)
    AutoTokenizer.from_pretrained(tiny_qwen2).save_pretrained(out)
    assert json.loads((out / "config.json").read_text())["dtype"] == "bfloat16"
    return out


@pytest.fixture(scope="module", params=["attention", "lora"])
def trained(request: pytest.FixtureRequest, bf16_base: Path, tmp_path_factory):  # type: ignore[no-untyped-def]
    # loaded in fp32 as the worker loads every model (fp32 master weights)
    model = AutoModelForCausalLM.from_pretrained(bf16_base, dtype=torch.float32)
    tok = AutoTokenizer.from_pretrained(bf16_base)
    cfg = TrainConfig(
        trainable=request.param,
        max_steps=2,
        batch_size=4,
        max_length=64,
        max_prompt_length=32,
        learning_rate=2e-2,
        lora_r=4,
        lora_alpha=8,
    )
    result = train(model, tok, QUADS, cfg, tmp_path_factory.mktemp("work"))
    assert all(p.dtype == torch.float32 for p in result.model.parameters())
    return result.model, tok, cfg


def dtypes(path: Path) -> set[torch.dtype]:
    with safe_open(str(path), "pt") as f:
        return {SAFETENSORS_DTYPE[f.get_slice(k).get_dtype()] for k in f.keys()}


def test_adapter_is_written_in_the_base_models_dtype(trained, bf16_base: Path, tmp_path: Path):  # type: ignore[no-untyped-def]
    model, tok, cfg = trained
    assert cfg.export_dtype == "model"  # the default
    export_adapter(model, tok, tmp_path / "model", config=cfg, **META)
    fp32 = cfg.model_copy(update={"export_dtype": "float32"})
    export_adapter(model, tok, tmp_path / "fp32", config=fp32, **META)
    weights, full = (tmp_path / d / "adapter_model.safetensors" for d in ("model", "fp32"))
    assert dtypes(weights) == {torch.bfloat16} and dtypes(full) == {torch.float32}
    assert weights.stat().st_size < 0.6 * full.stat().st_size  # 2 bytes a weight, not 4
    meta = json.loads((tmp_path / "model" / "clo_metadata.json").read_text())
    assert meta["export_dtype"] == "bfloat16"
    card = (tmp_path / "model" / "README.md").read_text()
    assert "weights stored as `bfloat16` (export_dtype=model: the base model's own dtype)" in card
    assert "`float32` (export_dtype=float32)" in (tmp_path / "fp32" / "README.md").read_text()
    # the bf16 adapter reloads with stock PEFT: the trained weights, rounded to bf16
    reloaded = PeftModel.from_pretrained(
        AutoModelForCausalLM.from_pretrained(bf16_base, dtype=torch.float32),
        str(tmp_path / "model"),
    )
    got = dict(reloaded.named_parameters())
    for name, p in model.named_parameters():
        if p.requires_grad:
            key = (
                name
                if cfg.trainable == "lora"
                else name.replace("_proj.", "_proj.modules_to_save.default.", 1)
            )
            key = key if key in got else f"base_model.model.{key}"
            assert torch.equal(got[key].float(), p.detach().to(torch.bfloat16).float()), name


def test_export_dtype_option_overrides_the_models(trained, tiny_qwen2: Path, tmp_path: Path):  # type: ignore[no-untyped-def]
    model, tok, cfg = trained
    half = cfg.model_copy(update={"export_dtype": "float16"})
    export_adapter(model, tok, tmp_path / "a", config=half, **META)
    assert dtypes(tmp_path / "a" / "adapter_model.safetensors") == {torch.float16}


def test_merged_model_is_written_and_reloads_in_the_export_dtype(trained, tmp_path: Path):  # type: ignore[no-untyped-def]
    model, tok, cfg = trained
    export_merged(model, tok, tmp_path / "merged", config=cfg, **META)
    assert dtypes(tmp_path / "merged" / "model.safetensors") == {torch.bfloat16}
    config = json.loads((tmp_path / "merged" / "config.json").read_text())
    assert config["dtype"] == "bfloat16"
    reloaded = AutoModelForCausalLM.from_pretrained(tmp_path / "merged")
    assert next(reloaded.parameters()).dtype == torch.bfloat16
    assert all(p.dtype == torch.float32 for p in model.parameters())  # the model is untouched


def test_tied_weights_are_written_once_when_cast(tiny_llama: Path, tmp_path: Path) -> None:
    from transformers import AutoConfig

    torch.manual_seed(0)
    tied = AutoModelForCausalLM.from_config(
        AutoConfig.from_pretrained(tiny_llama, tie_word_embeddings=True)
    )
    tok = AutoTokenizer.from_pretrained(tiny_llama)
    cfg = TrainConfig(trainable="full", export_dtype="bfloat16")
    export_merged(tied, tok, tmp_path / "m", config=cfg, **META)
    with safe_open(str(tmp_path / "m" / "model.safetensors"), "pt") as f:
        keys = set(f.keys())
    assert "model.embed_tokens.weight" in keys and "lm_head.weight" not in keys
    reloaded = AutoModelForCausalLM.from_pretrained(tmp_path / "m")
    assert reloaded.lm_head.weight is reloaded.model.embed_tokens.weight
    assert torch.equal(reloaded.lm_head.weight, tied.lm_head.weight.detach().bfloat16())
