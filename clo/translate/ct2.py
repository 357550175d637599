"""CTranslate2 backend: the same M2M100 / NLLB checkpoint, converted once, run by CTranslate2.

Everything but the network is the transformers backend's (tokenizer, language codes, batch
plan, length cap, id stripping, decoding of ids to text), so with float32 and greedy
decoding both backends give the same ids (tests/clo/translate/test_translate_ct2.py). The
conversion (ctranslate2.converters.TransformersConverter) runs on first use and is kept in
a cache folder keyed by the checkpoint's files and the ctranslate2 version; int8 and the
other compute types quantize the float weights when the converted model is loaded.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from clo.errors import CloError
from clo.translate.backend import Translator
from clo.translate.config import Decoding, TranslatorConfig

logger = logging.getLogger(__name__)

# bump when the conversion below changes, so cached conversions are redone
CONVERSION_VERSION = 1
VOCAB_FILE = "shared_vocabulary.json"


def _import_ct2() -> Any:
    try:
        import ctranslate2
    except ImportError as exc:
        raise CloError(
            "backend: ctranslate2 is not installed; pip install 'clo-service[ct2]' or use "
            "backend 'transformers'"
        ) from exc
    return ctranslate2


def vocabulary(tokenizer: Any, size: int) -> list[str]:
    """One distinct token string per model id 0..size-1, in id order.

    The converter reads the vocabulary from tokenizer.get_vocab(), which in transformers 5
    leaves out M2M100's __xx__ language codes (no longer registered as added tokens), so
    the vocabulary came out 100 short of the embedding. M2M100's eight reserved ids past
    the codes decode to <unk>: they get the names the converter itself gives them.
    """
    tokens: list[str] = []
    madeup = 0
    for i in range(size):
        token = tokenizer.convert_ids_to_tokens(i)
        if token is None or (token == tokenizer.unk_token and i != tokenizer.unk_token_id):
            token, madeup = f"madeupword{madeup}", madeup + 1
        tokens.append(token)
    if len(set(tokens)) != size:
        raise CloError(f"model: tokenizer maps two of the {size} model ids to the same token")
    return tokens


class _FullVocabTokenizer:
    """The tokenizer as the converter sees it: get_vocab() covers every model id."""

    num_madeup_words = 0  # already named in the vocabulary
    special_tokens_map: dict[str, Any] = {}  # nothing more to append

    def __init__(self, tokenizer: Any, tokens: list[str]) -> None:
        self._tokenizer = tokenizer
        self._vocab = {t: i for i, t in enumerate(tokens)}

    def get_vocab(self) -> dict[str, int]:
        return dict(self._vocab)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._tokenizer, name)


def _source_dir(config: TranslatorConfig) -> Path:
    """The checkpoint's folder: a local directory, or the hub cache's snapshot (offline)."""
    from transformers.utils.hub import cached_file

    found = cached_file(config.model, "config.json", revision=config.revision)
    if found is None:
        raise OSError(f"no config.json for {config.model!r}")
    return Path(found).parent


def _fingerprint(config: TranslatorConfig, ct2_version: str) -> str:
    """sha256 over what the converted model depends on (files by name, size and mtime)."""
    source = _source_dir(config)
    files = sorted(
        (p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in source.iterdir() if p.is_file()
    )
    payload = [
        str(source.resolve()),
        config.revision,
        config.safetensors_only,
        files,
        ct2_version,
        CONVERSION_VERSION,
    ]
    return hashlib.sha256(json.dumps(payload).encode()).hexdigest()[:24]


def cache_root(config: TranslatorConfig) -> Path:
    if config.ct2_cache_dir:
        return Path(config.ct2_cache_dir)
    env = os.environ.get("CLO_CT2_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "clo" / "ctranslate2"


def converted_model(config: TranslatorConfig) -> Path:
    """The CTranslate2 conversion of config.model, converting it first if not cached."""
    ct2 = _import_ct2()
    root = cache_root(config)
    out = root / _fingerprint(config, ct2.__version__)
    if (out / "model.bin").is_file():
        return out

    class Converter(ct2.converters.TransformersConverter):  # type: ignore[misc, name-defined]
        def load_model(self, model_class: Any, path: str, **kwargs: Any) -> Any:
            if config.safetensors_only:
                kwargs["use_safetensors"] = True
            model = model_class.from_pretrained(path, **kwargs)
            self.vocab_size = int(model.config.vocab_size)
            return model

        def load_tokenizer(self, tokenizer_class: Any, path: str, **kwargs: Any) -> Any:
            tokenizer = tokenizer_class.from_pretrained(path, revision=config.revision, **kwargs)
            return _FullVocabTokenizer(tokenizer, vocabulary(tokenizer, self.vocab_size))

    root.mkdir(parents=True, exist_ok=True)
    staging = root / f".{out.name}.{os.getpid()}.tmp"
    logger.info("converting %s to CTranslate2 in %s", config.model, out)
    try:
        try:
            Converter(config.model, revision=config.revision).convert(str(staging), force=True)
        except ValueError as exc:  # the converter's word for "cannot convert this model"
            raise CloError(f"model: ctranslate2 cannot convert {config.model!r}: {exc}") from exc
        try:
            staging.rename(out)  # atomic: a reader never sees a half-written conversion
        except OSError:
            if not (out / "model.bin").is_file():
                raise
            # another process finished the same conversion first: use theirs
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return out


def resolve_compute_type(compute_type: str, dtype: torch.dtype) -> str:
    if compute_type != "auto":
        return compute_type
    return {torch.bfloat16: "bfloat16", torch.float16: "float16"}.get(dtype, "float32")


class CTranslate2Translator(Translator):
    """Translator whose generate() runs a CTranslate2 conversion of the same checkpoint."""

    def _load_model(self, load_kwargs: dict[str, Any]) -> None:
        ct2 = _import_ct2()
        device = self.device.type
        self.compute_type = resolve_compute_type(self.config.compute_type, self.dtype)
        supported = ct2.get_supported_compute_types(device)
        if self.compute_type not in supported:
            raise CloError(
                f"compute_type: {self.compute_type!r} is not supported by ctranslate2 on "
                f"{device} (supported: {', '.join(sorted(supported))})"
            )
        self.model_dir = converted_model(self.config)
        self.model = ct2.Translator(
            str(self.model_dir),
            device=device,
            device_index=self.device.index or 0,
            compute_type=self.compute_type,
            # one batch at a time, as the transformers backend: as many threads as torch
            intra_threads=torch.get_num_threads() if device == "cpu" else 0,
            inter_threads=1,
        )
        tokens = json.loads((self.model_dir / VOCAB_FILE).read_text(encoding="utf-8"))
        self._tokens: list[str] = tokens
        self._ids = {t: i for i, t in enumerate(tokens)}

    @property
    def engine(self) -> str:
        return f"ctranslate2:{self.compute_type}"

    @property
    def output_id(self) -> str:
        # int8 (and any other engine) can change outputs: never share cached translations
        return f"{self.config.model}#{self.engine}"

    def generate(
        self, texts: Sequence[str], source: str, target: str, decoding: Decoding | None = None
    ) -> list[str]:
        """Translate one batch with one translate_batch() call."""
        decoding = decoding or self.config.decoding
        self.tokenizer.src_lang = self.language_code(source)
        target_token = self._tokens[self._target_token_id(self.language_code(target))]
        ids = self.tokenizer(
            list(texts), truncation=True, max_length=self.config.max_source_tokens
        )["input_ids"]
        longest = max(len(x) for x in ids)
        max_new = min(decoding.max_new_tokens, math.ceil(longest * decoding.length_factor) + 10)
        results = self.model.translate_batch(
            [[self._tokens[i] for i in row] for row in ids],
            target_prefix=[[target_token]] * len(ids),
            beam_size=decoding.num_beams,
            # generate()'s max_new_tokens counts the target code and the </s> it forces at
            # the cap; max_decoding_length counts the code but never adds a </s>
            max_decoding_length=max_new - 1,
            repetition_penalty=decoding.repetition_penalty,
            no_repeat_ngram_size=decoding.no_repeat_ngram_size,
        )
        self.model_calls += 1
        self.segments_generated += len(texts)
        rows = [
            [self._ids[t] for t in r.hypotheses[0] if self._ids[t] not in self._strip_ids]
            for r in results
        ]
        return [s.strip() for s in self.tokenizer.batch_decode(rows, skip_special_tokens=True)]
