"""`clo export lora|merged --dtype`: trained (no cast, the export's own dtype) or bf16 / fp16 /
fp32, written so, named in the card and the report; an unknown dtype is refused by option."""

import json
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from transformers import AutoModelForCausalLM, AutoTokenizer
from typer.testing import CliRunner

from clo.cli import app
from clo.config import TrainConfig
from clo.export import export_adapter
from clo.pairs import Quadruple
from clo.trainer import train
from tests.support.threads import one_torch_thread  # noqa: F401  (autouse)

QUADS = [Quadruple(f"Q {i}?", f"A {i}.", f"F {i}?", f"Antwort {i}.") for i in range(4)]
CFG = TrainConfig(trainable="attention", max_steps=2, batch_size=4, max_length=32,
                  max_prompt_length=16, learning_rate=2e-2)  # fmt: skip


@pytest.fixture(scope="module")
def exported(tiny_qwen2: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    model = AutoModelForCausalLM.from_pretrained(tiny_qwen2)
    tok = AutoTokenizer.from_pretrained(tiny_qwen2)
    result = train(model, tok, QUADS, CFG, tmp_path_factory.mktemp("work"))
    out = tmp_path_factory.mktemp("run") / "adapter"
    export_adapter(
        result.model,
        tok,
        out,
        config=CFG,
        base_model=str(tiny_qwen2),
        base_revision=None,
        data_hash="0" * 64,
        metrics={},
    )
    return out


def _dtypes(path: Path) -> set[torch.dtype]:
    with safe_open(str(path), "pt") as f:
        return {f.get_tensor(k).dtype for k in f.keys()}


def _run(*args: str) -> str:
    result = CliRunner().invoke(app, ["export", *args])
    assert result.exit_code == 0, result.output
    return result.output


def test_lora_keeps_the_trained_dtype_or_casts(exported: Path, tmp_path: Path) -> None:
    assert _dtypes(exported / "adapter_model.safetensors") == {torch.float32}
    _run("lora", str(exported), "--rank", "4", "--out", str(tmp_path / "kept"))
    assert _dtypes(tmp_path / "kept" / "adapter_model.safetensors") == {torch.float32}
    report = json.loads((tmp_path / "kept" / "extraction.json").read_text())
    assert (report["dtype"], report["dtype_source"]) == ("float32", "trained")
    card = (tmp_path / "kept" / "README.md").read_text()
    assert "weights `float32` (the dtype the job exported the trained weights in)" in card

    _run("lora", str(exported), "--rank", "4", "--dtype", "bf16", "--out", str(tmp_path / "bf"))
    assert _dtypes(tmp_path / "bf" / "adapter_model.safetensors") == {torch.bfloat16}
    assert "weights `bfloat16` (cast on export)" in (tmp_path / "bf" / "README.md").read_text()


def test_merged_writes_the_dtype_asked_for_and_says_so(exported: Path, tmp_path: Path) -> None:
    _run("merged", str(exported), "--dtype", "fp16", "--out", str(tmp_path / "m16"))
    config = json.loads((tmp_path / "m16" / "config.json").read_text())
    assert config["dtype"] == "float16"
    assert _dtypes(tmp_path / "m16" / "model.safetensors") == {torch.float16}
    card = (tmp_path / "m16" / "README.md").read_text()
    assert "weights stored as `float16` (export_dtype=float16: cast on export)" in card
    assert AutoModelForCausalLM.from_pretrained(tmp_path / "m16").dtype == torch.float16

    _run("merged", str(exported), "--out", str(tmp_path / "mt"))
    meta = json.loads((tmp_path / "mt" / "clo_metadata.json").read_text())
    assert meta["export_dtype"] == "float32"
    assert (
        "the dtype the job exported the trained weights in)"
        in (tmp_path / "mt" / "README.md").read_text()
    )


def test_an_unknown_dtype_is_refused_by_its_option(exported: Path, tmp_path: Path) -> None:
    for command in ("lora", "merged"):
        result = CliRunner().invoke(
            app, ["export", command, str(exported), "--dtype", "int8", "--out", str(tmp_path / "x")]
        )
        assert result.exit_code == 2, result.output
        text = " ".join(result.output.replace("│", " ").split())
        assert "--dtype" in text and "trained, bf16, fp16, fp32" in text, text
    assert not (tmp_path / "x").exists()
