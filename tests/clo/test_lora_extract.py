"""An attention-only result, re-expressed as a plain LoRA by truncated SVD, loads with stock
PEFT as a LoRA, scores held-out text as reported, is exact at full rank, and `clo export
lora` refuses bad ranks and folders that are not adapters."""

import json
from pathlib import Path

import pytest
import torch
from peft import PeftModel
from peft.tuners.lora import LoraLayer
from transformers import AutoModelForCausalLM, AutoTokenizer
from typer.testing import CliRunner

from clo.cli import app
from clo.config import TrainConfig
from clo.encoding import encode_quads, pad_token_id
from clo.errors import CloError
from clo.export import export_adapter
from clo.lora_extract import ExtractOptions, extract_lora
from clo.pairs import Quadruple, write_quadruples
from clo.reference import compute_logps
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
HELDOUT = [
    Quadruple(f"Question {i}: a colour?", f"Red {i}.", f"Frage {i}: eine Farbe?", f"Rot {i}.")
    for i in range(3)
]
CFG = TrainConfig(
    trainable="attention",
    max_steps=3,
    batch_size=4,
    max_length=64,
    max_prompt_length=32,
    learning_rate=2e-2,
)
FULL_RANK = 64  # tiny Qwen2: q/o are 64x64, k/v 32x64


@pytest.fixture(scope="module")
def exported(tiny_qwen2: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The attention-only export of a tiny Qwen2 trained 3 steps, its held-out file beside."""
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
    write_quadruples(out.parent / "heldout.jsonl", HELDOUT)
    return out


def heldout_logps(model, tok) -> torch.Tensor:  # type: ignore[no-untyped-def]
    encoded, _ = encode_quads(tok, HELDOUT, CFG.max_length, CFG.max_prompt_length)
    return compute_logps(model, encoded, pad_token_id(tok))[0].flatten().double()


def test_extracted_adapter_is_a_plain_lora_within_its_reported_error(
    exported: Path, tiny_qwen2: Path, tmp_path: Path
) -> None:
    report = extract_lora(exported, tmp_path / "lora", ExtractOptions(rank=8))
    config = json.loads((tmp_path / "lora" / "adapter_config.json").read_text())
    assert config["peft_type"] == "LORA" and config["r"] == 8 and config["lora_alpha"] == 8
    assert not config.get("modules_to_save")  # what vLLM refuses
    assert sorted(config["target_modules"]) == ["k_proj", "o_proj", "q_proj", "v_proj"]
    assert {"extraction.json", "README.md", "tokenizer.json", "SHA256SUMS"} <= set(
        p.name for p in (tmp_path / "lora").iterdir()
    )

    tok = AutoTokenizer.from_pretrained(tiny_qwen2)
    lora = PeftModel.from_pretrained(
        AutoModelForCausalLM.from_pretrained(tiny_qwen2), str(tmp_path / "lora")
    )
    q_proj = lora.get_submodule("base_model.model.model.layers.0.self_attn.q_proj")
    assert isinstance(q_proj, LoraLayer) and q_proj.r["default"] == 8
    exact = PeftModel.from_pretrained(
        AutoModelForCausalLM.from_pretrained(tiny_qwen2), str(exported)
    )
    gap = (heldout_logps(lora, tok) - heldout_logps(exact, tok)).abs()
    measured = report["logprob"]
    assert measured["sequences"] == 4 * len(HELDOUT)  # the run's held-out file was found
    assert gap.max() <= measured["max_abs_delta"] + 1e-4
    assert gap.mean().item() == pytest.approx(measured["mean_abs_delta"], rel=1e-3, abs=1e-5)
    assert 0 < measured["mean_abs_delta"] < measured["exact_vs_base_mean_abs_delta"]
    on_disk = json.loads((tmp_path / "lora" / "extraction.json").read_text())
    assert on_disk["overall"] == report["overall"] and on_disk["rank"] == 8
    card = (tmp_path / "lora" / "README.md").read_text()
    assert f"{report['overall']['relative_error']:.3g} overall" in card
    assert "--enable-lora --lora-modules clo=path/to/this/dir" in card


def test_error_falls_with_rank_and_vanishes_at_full_rank(exported: Path, tmp_path: Path) -> None:
    errors = []
    for rank in (1, 4, 16, FULL_RANK):
        report = extract_lora(exported, tmp_path / f"r{rank}", ExtractOptions(rank=rank))
        errors.append(report["overall"]["relative_error"])
        per_projection = [p["relative_error"] for p in report["projections"].values()]
        assert max(per_projection) <= 1 and len(per_projection) == 8  # 2 layers x q/k/v/o
    assert errors == sorted(set(errors), reverse=True), errors  # strictly falling
    assert errors[-1] < 1e-5
    # Qwen2's q/k/v biases changed too: LoRA drops them unless asked, and says so
    assert sorted(report["not_represented"]) == [
        f"model.layers.{i}.self_attn.{p}_proj.bias" for i in range(2) for p in "kqv"
    ]


def test_full_rank_with_lora_bias_scores_as_the_exact_adapter(
    exported: Path, tmp_path: Path
) -> None:
    opts = ExtractOptions(rank=FULL_RANK, lora_bias=True)
    report = extract_lora(exported, tmp_path / "exact", opts)
    assert report["not_represented"] == {} and report["overall"]["relative_error"] < 1e-5
    assert report["logprob"]["max_abs_delta"] < 1e-3  # summed over a sequence, fp32
    assert report["logprob"]["exact_vs_base_mean_abs_delta"] > 0.1


def test_energy_threshold_picks_the_smallest_rank_keeping_it(
    exported: Path, tmp_path: Path
) -> None:
    low = extract_lora(exported, tmp_path / "e5", ExtractOptions(rank=None, energy=0.5))
    high = extract_lora(exported, tmp_path / "e99", ExtractOptions(rank=None, energy=0.99))
    assert 1 <= low["rank"] < high["rank"] <= FULL_RANK
    assert low["overall"]["relative_error"] ** 2 <= 0.5 + 1e-6  # kept energy ≥ 50% overall
    capped = extract_lora(exported, tmp_path / "cap", ExtractOptions(rank=2, energy=0.99))
    assert capped["rank"] == 2


def test_bad_options_fail_before_anything_is_written(exported: Path, tmp_path: Path) -> None:
    for opts, param in (
        (ExtractOptions(rank=0), "rank"),
        (ExtractOptions(rank=FULL_RANK + 1), "rank"),
        (ExtractOptions(energy=1.5), "energy"),
    ):
        with pytest.raises(CloError) as info:
            extract_lora(exported, tmp_path / "x", opts)
        assert info.value.param == param
    assert not (tmp_path / "x").exists()


def test_cli_extracts_and_explains_bad_input(exported: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    ok = runner.invoke(
        app, ["export", "lora", str(exported.parent), "--rank", "4", "--out", str(tmp_path / "l")]
    )
    assert ok.exit_code == 0, ok.output
    assert json.loads(ok.stdout)["rank"] == 4 and (tmp_path / "l" / "adapter_config.json").is_file()

    cases = (
        (["--rank", "0"], str(exported), "--rank", "at least 1"),
        (["--rank", "65"], str(exported), "--rank", "exceeds the largest projection's"),
        ([], str(tmp_path / "l" / "extraction.json"), "SOURCE", "is not a folder"),
        ([], str(tmp_path), "SOURCE", "is not an adapter"),
    )
    for extra, source, hint, message in cases:
        result = runner.invoke(
            app, ["export", "lora", source, *extra, "--out", str(tmp_path / "bad")]
        )
        assert result.exit_code == 2, result.output
        text = " ".join(result.output.replace("│", " ").split())  # rich boxes and wraps it
        assert hint in text and message in text, text
    assert not (tmp_path / "bad").exists()


def _trained_export(base: Path, trainable: str, out: Path) -> Path:
    from clo.export import export_merged

    cfg = CFG.model_copy(update={"trainable": trainable, "max_steps": 2, "lora_r": 4})
    model = AutoModelForCausalLM.from_pretrained(base)
    tok = AutoTokenizer.from_pretrained(base)
    result = train(model, tok, QUADS, cfg, out / "work")
    meta = dict(base_model=str(base), base_revision=None, data_hash="0" * 64, metrics={})
    export = export_merged if trainable == "full" else export_adapter
    export(result.model, tok, out / "export", config=cfg, **meta)
    return out / "export"


def test_a_lora_result_is_re_expressed_exactly_at_its_own_rank(
    tiny_qwen2: Path, tmp_path: Path
) -> None:
    export = _trained_export(tiny_qwen2, "lora", tmp_path)
    same = extract_lora(export, tmp_path / "r4", ExtractOptions(rank=4, texts=("Hallo Welt.",)))
    assert same["source"]["kind"] == "lora" and same["overall"]["relative_error"] < 1e-5
    assert same["logprob"]["max_abs_delta"] < 1e-3 < same["logprob"]["exact_vs_base_mean_abs_delta"]
    lower = extract_lora(export, tmp_path / "r2", ExtractOptions(rank=2))
    assert lower["overall"]["relative_error"] > 1e-3


def test_a_full_fine_tune_targets_every_linear_layer_and_lists_the_rest(
    tiny_llama: Path, tmp_path: Path
) -> None:
    export = _trained_export(tiny_llama, "full", tmp_path)
    report = extract_lora(export, tmp_path / "lora", ExtractOptions(rank=FULL_RANK))
    assert report["source"]["kind"] == "full" and report["overall"]["relative_error"] < 1e-5
    assert set(report["target_modules"]) == {
        "q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"
    }  # fmt: skip
    assert {"lm_head.weight", "model.embed_tokens.weight"} <= set(report["not_represented"])
    lora = PeftModel.from_pretrained(
        AutoModelForCausalLM.from_pretrained(tiny_llama), str(tmp_path / "lora")
    )
    assert isinstance(lora.get_submodule("base_model.model.model.layers.1.mlp.up_proj"), LoraLayer)


def test_an_adapter_on_disk_merges_into_a_full_model(
    exported: Path, tiny_qwen2: Path, tmp_path: Path
) -> None:
    result = CliRunner().invoke(
        app, ["export", "merged", str(exported), "--out", str(tmp_path / "merged")]
    )
    assert result.exit_code == 0, result.output
    merged = AutoModelForCausalLM.from_pretrained(tmp_path / "merged")
    assert not hasattr(merged, "peft_config")
    tok = AutoTokenizer.from_pretrained(tiny_qwen2)
    exact = PeftModel.from_pretrained(
        AutoModelForCausalLM.from_pretrained(tiny_qwen2), str(exported)
    )
    torch.testing.assert_close(heldout_logps(merged, tok), heldout_logps(exact, tok))
    assert "library_name: transformers" in (tmp_path / "merged" / "README.md").read_text()
    again = CliRunner().invoke(
        app, ["export", "merged", str(tmp_path / "merged"), "--out", str(tmp_path / "m2")]
    )
    assert again.exit_code == 2 and "full model already" in again.output
