"""Build tiny translation models (real M2M100 / NLLB architectures, random weights) offline.

No machine here reaches a model hub, so tests, the benchmark and the offline demo translate
with these: the tokenizer is a real sentencepiece model trained on a small shipped corpus,
the network a real `M2M100ForConditionalGeneration`, both written with `save_pretrained`
and loaded back through `AutoTokenizer` / `AutoModelForSeq2SeqLM` like the hub models.
The output is random text: only the code path is real, not the translations.
"""

from __future__ import annotations

import json
import logging
import tempfile
from importlib import resources
from pathlib import Path

import sentencepiece as spm
import torch
from transformers import M2M100Config, M2M100ForConditionalGeneration, M2M100Tokenizer

logger = logging.getLogger(__name__)

CORPUS_NAME = "m2m_corpus_multilingual.txt"
# fairseq order, which M2M100 and NLLB share: <s>=0, <pad>=1, </s>=2, <unk>=3.
BOS_ID, PAD_ID, EOS_ID, UNK_ID = 0, 1, 2, 3


def corpus_path() -> Path:
    """The small multilingual text the tiny tokenizers are trained on (shipped in clo/data)."""
    return Path(str(resources.files("clo") / "data" / CORPUS_NAME))


def _train_sentencepiece(model_prefix: Path, vocab_size: int) -> spm.SentencePieceProcessor:
    spm.SentencePieceTrainer.train(
        input=str(corpus_path()),
        model_prefix=str(model_prefix),
        model_type="bpe",
        vocab_size=vocab_size,
        # the corpus is tiny: let the trainer stop below vocab_size instead of failing
        hard_vocab_limit=False,
        character_coverage=1.0,
        # unseen characters (any script) round-trip through byte pieces instead of <unk>
        byte_fallback=True,
        bos_id=BOS_ID,
        pad_id=PAD_ID,
        eos_id=EOS_ID,
        unk_id=UNK_ID,
        num_threads=1,
        minloglevel=2,
    )
    return spm.SentencePieceProcessor(model_file=f"{model_prefix}.model")


def _tiny_config(vocab_size: int, d_model: int, layers: int) -> M2M100Config:
    return M2M100Config(
        vocab_size=vocab_size,
        d_model=d_model,
        encoder_layers=layers,
        decoder_layers=layers,
        encoder_attention_heads=2,
        decoder_attention_heads=2,
        encoder_ffn_dim=2 * d_model,
        decoder_ffn_dim=2 * d_model,
        max_position_embeddings=512,
        dropout=0.0,
        attention_dropout=0.0,
        activation_dropout=0.0,
        encoder_layerdrop=0.0,
        decoder_layerdrop=0.0,
        scale_embedding=True,
        pad_token_id=PAD_ID,
        bos_token_id=BOS_ID,
        eos_token_id=EOS_ID,
        decoder_start_token_id=EOS_ID,
    )


def _save_model(out: Path, vocab_size: int, d_model: int, layers: int, seed: int) -> None:
    torch.manual_seed(seed)
    model = M2M100ForConditionalGeneration(_tiny_config(vocab_size, d_model, layers))
    model.generation_config.decoder_start_token_id = EOS_ID
    model.generation_config.forced_eos_token_id = EOS_ID
    model.save_pretrained(out, safe_serialization=True)


def build_tiny_m2m100(
    out_dir: str | Path,
    vocab_size: int = 1000,
    d_model: int = 32,
    layers: int = 1,
    seed: int = 0,
) -> Path:
    """Write a tiny M2M100 (tokenizer + random-weight model) to out_dir and return it."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        sp = _train_sentencepiece(Path(tmp) / "spm", vocab_size)
        vocab = {sp.id_to_piece(i): i for i in range(sp.get_piece_size())}
        vocab_file = Path(tmp) / "vocab.json"
        vocab_file.write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
        # The tokenizer appends one __xx__ token per M2M100 language after the vocab.
        tokenizer = M2M100Tokenizer(vocab_file=str(vocab_file), spm_file=f"{tmp}/spm.model")
        tokenizer.save_pretrained(out)
    # pieces, then one id per language code, then the 8 "madeup word" ids the real
    # checkpoints reserve (len(tokenizer) counts only the pieces)
    model_vocab = tokenizer.vocab_size + len(tokenizer.lang_code_to_id) + tokenizer.num_madeup_words
    _save_model(out, model_vocab, d_model, layers, seed)
    logger.info("tiny M2M100 written to %s (vocab %d)", out, model_vocab)
    return out


def build_tiny_nllb(
    out_dir: str | Path,
    vocab_size: int = 1000,
    d_model: int = 32,
    layers: int = 1,
    seed: int = 0,
) -> Path:
    """Write a tiny NLLB-200 (NllbTokenizer fast + M2M100 architecture) to out_dir."""
    from tokenizers import SentencePieceBPETokenizer
    from transformers import NllbTokenizer

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    specials = ["<s>", "<pad>", "</s>", "<unk>"]  # ids 0..3, the fairseq order NLLB expects
    bpe = SentencePieceBPETokenizer(unk_token="<unk>")
    bpe.train(
        [str(corpus_path())], vocab_size=vocab_size, special_tokens=specials, show_progress=False
    )
    model_json = json.loads(bpe.to_str())["model"]
    merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in model_json["merges"]]
    # NllbTokenizer registers the 202 language codes (eng_Latn, ...) as special tokens.
    # the tokenizers BPE model takes (left, right) pairs; the stub says list[str]
    tokenizer = NllbTokenizer(vocab=model_json["vocab"], merges=merges)  # type: ignore[arg-type]
    tokenizer.save_pretrained(out)
    _save_model(out, len(tokenizer), d_model, layers, seed)
    logger.info("tiny NLLB written to %s (vocab %d)", out, len(tokenizer))
    return out
