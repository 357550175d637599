"""M2M100 / NLLB-200 translation through transformers, batched by token budget."""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import torch
from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

from clo.errors import CloError
from clo.languages import Language, get_language
from clo.translate.config import Decoding, TranslatorConfig

logger = logging.getLogger(__name__)

CodeTable = Literal["m2m100", "nllb"]


@dataclass(frozen=True)
class Batch:
    """Indices (into the caller's list) of the segments generated together."""

    indices: list[int]
    padded_tokens: int


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except RuntimeError as exc:
        raise CloError(f"device: {device!r} is not a torch device (use auto, cpu, cuda)") from exc
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise CloError("device: cuda requested but no CUDA GPU is available (use auto or cpu)")
    return resolved


def resolve_dtype(dtype: str, device: torch.device) -> torch.dtype:
    if dtype == "auto":
        # bf16 halves memory and is fast on GPUs; on CPU fp32 matmuls are the fast path
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    resolved: torch.dtype = getattr(torch, dtype)
    return resolved


def detect_code_table(tokenizer: Any) -> CodeTable:
    """Which language-code scheme the tokenizer speaks: M2M100 (__de__) or NLLB (deu_Latn)."""
    if hasattr(tokenizer, "get_lang_id") and hasattr(tokenizer, "lang_code_to_id"):
        return "m2m100"
    if tokenizer.convert_tokens_to_ids("eng_Latn") not in (None, tokenizer.unk_token_id):
        return "nllb"
    raise CloError(
        f"model: tokenizer {type(tokenizer).__name__} has neither M2M100 (__en__) nor NLLB "
        "(eng_Latn) language codes; use an M2M100 or NLLB-200 checkpoint"
    )


def plan_batches(lengths: Sequence[int], batch_tokens: int, max_batch_size: int) -> list[Batch]:
    """Sort by length (longest first) and fill each batch up to the padded-token budget."""
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    batches: list[Batch] = []
    current: list[int] = []
    longest = 0
    for i in order:
        # longest-first: the batch's padded width is fixed by its first member
        width = max(longest, lengths[i])
        full = width * (len(current) + 1) > batch_tokens or len(current) >= max_batch_size
        if current and full:
            batches.append(Batch(current, longest * len(current)))
            current, width = [], lengths[i]
        current.append(i)
        longest = width
    if current:
        batches.append(Batch(current, longest * len(current)))
    return batches


class Translator:
    """A loaded M2M100 or NLLB-200 model; counts its generate() calls in `model_calls`."""

    def __init__(self, config: TranslatorConfig | None = None) -> None:
        self.config = config or TranslatorConfig()
        self.device = resolve_device(self.config.device)
        self.dtype = resolve_dtype(self.config.dtype, self.device)
        self.model_calls = 0
        self.segments_generated = 0
        # never trust_remote_code: M2M100 and NLLB are built into transformers
        load_kwargs: dict[str, Any] = {"revision": self.config.revision, "trust_remote_code": False}
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(self.config.model, **load_kwargs)
            self._load_model(load_kwargs)
        except OSError as exc:
            raise CloError(
                f"model: cannot load {self.config.model!r} ({exc}); give a hub id such as "
                "facebook/m2m100_1.2B or a local directory written by save_pretrained"
            ) from exc
        self.code_table = detect_code_table(self.tokenizer)
        # M2M100Tokenizer does not mark its __xx__ tokens special, so skip_special_tokens
        # would leave the forced target-language token in the text: strip them by id.
        self._strip_ids = set(getattr(self.tokenizer, "lang_code_to_id", {}).values())
        self._strip_ids.update(self.tokenizer.all_special_ids)
        logger.info(
            "loaded %s (%s codes) on %s as %s",
            self.config.model,
            self.code_table,
            self.device,
            self.dtype,
        )

    def _load_model(self, load_kwargs: dict[str, Any]) -> None:
        """Load the network (other backends override this and generate(), nothing else)."""
        self.model = AutoModelForSeq2SeqLM.from_pretrained(
            self.config.model,
            dtype=self.dtype,
            use_safetensors=True if self.config.safetensors_only else None,
            **load_kwargs,
        )
        self.model.to(self.device).eval()

    @property
    def model_id(self) -> str:
        return self.config.model

    @property
    def engine(self) -> str:
        """What runs the network (the translation report names it)."""
        return "transformers"

    @property
    def output_id(self) -> str:
        """The model as far as its outputs go: the translation cache keys on it."""
        return self.config.model

    def language_code(self, code: str) -> str:
        """The model's own code for a language (M2M100 "de", NLLB "deu_Latn")."""
        lang: Language = get_language(code)
        model_code = lang.m2m100_code if self.code_table == "m2m100" else lang.nllb_code
        if model_code is None:
            other = "an M2M100" if self.code_table == "nllb" else "an NLLB-200"
            raise CloError(
                f"target language: {lang.name} is not covered by {self.model_id}; use {other} model"
            )
        if self.code_table == "m2m100" and model_code not in self.tokenizer.lang_code_to_id:
            raise CloError(f"target language: {self.model_id} has no code for {lang.name}")
        if self.code_table == "nllb":
            if self.tokenizer.convert_tokens_to_ids(model_code) == self.tokenizer.unk_token_id:
                raise CloError(f"target language: {self.model_id} has no code for {lang.name}")
        return model_code

    def _target_token_id(self, model_code: str) -> int:
        if self.code_table == "m2m100":
            return int(self.tokenizer.get_lang_id(model_code))
        token_id = self.tokenizer.convert_tokens_to_ids(model_code)
        assert isinstance(token_id, int)  # one token in, one id out
        return token_id

    def token_lengths(self, texts: Sequence[str]) -> list[int]:
        """Source lengths in tokens (with language code and </s>), capped at max_source_tokens."""
        if not texts:
            return []
        ids = self.tokenizer(list(texts), add_special_tokens=True)["input_ids"]
        return [min(len(x), self.config.max_source_tokens) for x in ids]

    def plan(self, texts: Sequence[str]) -> list[Batch]:
        return plan_batches(
            self.token_lengths(texts), self.config.batch_tokens, self.config.max_batch_size
        )

    @torch.inference_mode()
    def generate(
        self, texts: Sequence[str], source: str, target: str, decoding: Decoding | None = None
    ) -> list[str]:
        """Translate one batch with one generate() call."""
        decoding = decoding or self.config.decoding
        self.tokenizer.src_lang = self.language_code(source)
        target_id = self._target_token_id(self.language_code(target))
        enc = self.tokenizer(
            list(texts),
            return_tensors="pt",
            padding=True,
            truncation=True,
            max_length=self.config.max_source_tokens,
        ).to(self.device)
        longest = int(enc["input_ids"].shape[1])
        # sentence-level MT output is about as long as its source: cap runaway generations
        max_new = min(decoding.max_new_tokens, math.ceil(longest * decoding.length_factor) + 10)
        gen_kwargs: dict[str, Any] = {
            "forced_bos_token_id": target_id,
            "num_beams": decoding.num_beams,
            "max_new_tokens": max_new,
            "do_sample": False,
        }
        if decoding.no_repeat_ngram_size:
            gen_kwargs["no_repeat_ngram_size"] = decoding.no_repeat_ngram_size
        if decoding.repetition_penalty != 1.0:
            gen_kwargs["repetition_penalty"] = decoding.repetition_penalty
        out = self.model.generate(**enc, **gen_kwargs)
        self.model_calls += 1
        self.segments_generated += len(texts)
        rows = [[t for t in row if t not in self._strip_ids] for row in out.tolist()]
        return [s.strip() for s in self.tokenizer.batch_decode(rows, skip_special_tokens=True)]

    def translate_batches(
        self, texts: Sequence[str], source: str, target: str, decoding: Decoding | None = None
    ) -> Iterator[tuple[list[int], list[str]]]:
        """Yield (indices, translations) batch by batch, longest segments first."""
        for batch in self.plan(texts):
            outputs = self.generate([texts[i] for i in batch.indices], source, target, decoding)
            yield batch.indices, outputs

    def translate(
        self, texts: Sequence[str], source: str, target: str, decoding: Decoding | None = None
    ) -> list[str]:
        """Translate sentences (no splitting, no cache) in token-budget batches."""
        results: list[str] = [""] * len(texts)
        for indices, outputs in self.translate_batches(texts, source, target, decoding):
            for i, out in zip(indices, outputs, strict=True):
                results[i] = out
        return results


def make_translator(config: TranslatorConfig | None = None) -> Translator:
    """The translator for config.backend (ctranslate2 is imported only when chosen)."""
    config = config or TranslatorConfig()
    if config.backend == "ctranslate2":
        from clo.translate.ct2 import CTranslate2Translator

        return CTranslate2Translator(config)
    return Translator(config)
