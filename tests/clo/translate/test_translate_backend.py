"""Tiny M2M100/NLLB builders, model loading, language codes and token-budget batching."""

import json

import pytest
import torch
from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

from clo.errors import CloError
from clo.translate import Decoding, Translator, TranslatorConfig, plan_batches


def test_tiny_m2m100_reloads_with_language_codes(tiny_m2m100):
    tok = AutoTokenizer.from_pretrained(tiny_m2m100)
    model = AutoModelForSeq2SeqLM.from_pretrained(tiny_m2m100, use_safetensors=True)
    assert type(tok).__name__ == "M2M100Tokenizer"
    assert (tiny_m2m100 / "model.safetensors").exists()
    assert (tiny_m2m100 / "sentencepiece.bpe.model").exists()
    # every M2M100 language token has an embedding row
    lang_ids = [tok.get_lang_id(code) for code in ("en", "de", "zh", "sw", "yo")]
    assert len(set(lang_ids)) == 5 and max(tok.lang_code_to_id.values()) < model.config.vocab_size
    tok.src_lang = "de"
    ids = tok("Über den Wolken 你好")["input_ids"]
    assert ids[0] == tok.get_lang_id("de") and ids[-1] == tok.eos_token_id
    assert tok.decode(ids[1:-1]) == "Über den Wolken 你好"


def test_tiny_nllb_uses_flores_codes(tiny_nllb):
    tok = AutoTokenizer.from_pretrained(tiny_nllb)
    model = AutoModelForSeq2SeqLM.from_pretrained(tiny_nllb)
    deu = tok.convert_tokens_to_ids("deu_Latn")
    assert deu != tok.unk_token_id and deu < model.config.vocab_size
    tok.src_lang = "yor_Latn"
    assert tok("Ẹ káàárọ̀")["input_ids"][0] == tok.convert_tokens_to_ids("yor_Latn")


def test_code_table_follows_the_tokenizer(greedy_translator, tiny_nllb):
    nllb = Translator(
        TranslatorConfig(model=str(tiny_nllb), device="cpu", decoding=Decoding(num_beams=1))
    )
    assert greedy_translator.code_table == "m2m100" and nllb.code_table == "nllb"
    assert greedy_translator.language_code("Swahili") == "sw"
    assert nllb.language_code("sw") == "swh_Latn" and nllb.language_code("zh") == "zho_Hans"
    out = nllb.translate(["Good morning.", "How are you?"], "en", "yo")
    assert len(out) == 2 and nllb.model_calls == 1
    # NLLB lacks Breton; the error names the language and the way out
    with pytest.raises(CloError, match="Breton.*M2M100"):
        nllb.language_code("br")
    with pytest.raises(CloError, match="unknown language"):
        greedy_translator.language_code("klingon")


def test_float32_on_cpu_and_no_remote_code(greedy_translator):
    assert greedy_translator.dtype == torch.float32
    assert greedy_translator.device.type == "cpu"
    assert not greedy_translator.model.training


def test_missing_model_is_a_clear_error(tmp_path):
    with pytest.raises(CloError, match="model: cannot load"):
        Translator(TranslatorConfig(model=str(tmp_path / "nope"), device="cpu"))


def test_non_translation_tokenizer_is_refused(tmp_path, tiny_m2m100):
    # a checkpoint whose tokenizer has no language codes cannot be steered to a target
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    raw = Tokenizer(models.WordLevel({"<unk>": 0, "<pad>": 1, "</s>": 2, "hi": 3}, "<unk>"))
    raw.pre_tokenizer = pre_tokenizers.Whitespace()
    PreTrainedTokenizerFast(
        tokenizer_object=raw, unk_token="<unk>", pad_token="<pad>", eos_token="</s>"
    ).save_pretrained(tmp_path)
    for name in ("config.json", "generation_config.json", "model.safetensors"):
        (tmp_path / name).write_bytes((tiny_m2m100 / name).read_bytes())
    with pytest.raises(CloError, match="neither M2M100.*nor NLLB"):
        Translator(TranslatorConfig(model=str(tmp_path), device="cpu"))


def test_plan_batches_respects_the_token_budget():
    lengths = [5, 40, 12, 12, 7, 33, 3, 64, 20, 9]
    batches = plan_batches(lengths, batch_tokens=80, max_batch_size=4)
    seen = sorted(i for b in batches for i in b.indices)
    assert seen == list(range(len(lengths)))  # every segment exactly once
    for b in batches:
        width = max(lengths[i] for i in b.indices)
        assert len(b.indices) <= 4
        assert width * len(b.indices) <= 80 or len(b.indices) == 1
        assert b.padded_tokens == width * len(b.indices)
    # longest first, so similar lengths share a batch (little padding)
    firsts = [lengths[b.indices[0]] for b in batches]
    assert firsts == sorted(firsts, reverse=True)
    assert plan_batches([], 100, 8) == []


def test_translate_counts_one_generate_call_per_batch(make_translator):
    texts = [f"Sentence {'word ' * (i % 7)}number {i}." for i in range(16)]
    small = make_translator(batch_tokens=64)
    big = make_translator(batch_tokens=100_000)
    out_small = small.translate(texts, "en", "de")
    out_big = big.translate(texts, "en", "de")
    assert len(out_small) == len(out_big) == 16
    assert small.model_calls == len(small.plan(texts)) > 3
    assert big.model_calls == 1
    assert all(isinstance(t, str) for t in out_small)
    # the forced target-language token never leaks into the text
    assert not any("__de__" in t for t in out_small + out_big)


def test_config_validation_names_the_field():
    with pytest.raises(ValueError, match="quality_check"):
        TranslatorConfig(quality_check="sometimes")
    with pytest.raises(ValueError, match="num_beams"):
        TranslatorConfig(decoding={"num_beams": 0})
    fields = TranslatorConfig.model_json_schema()["properties"]
    assert all(spec.get("description") for spec in fields.values())
    assert json.loads(TranslatorConfig().model_dump_json())["model"] == "facebook/m2m100_1.2B"
