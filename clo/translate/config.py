"""Typed settings of the translation stage (model, decoding, batching, quality control)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

QualityMode = Literal["drop", "report", "off"]
DType = Literal["auto", "float32", "bfloat16", "float16"]
Backend = Literal["transformers", "ctranslate2"]
# CTranslate2 compute types (weights are quantized when the converted model is loaded)
ComputeType = Literal[
    "auto",
    "float32",
    "int8",
    "int8_float32",
    "int8_float16",
    "int8_bfloat16",
    "float16",
    "bfloat16",
]


class Decoding(BaseModel):
    """Decoding settings; part of every cache key, so changing one re-translates."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    num_beams: int = Field(4, ge=1, le=16, description="Beam size (paper default: 4-5 beams).")
    max_new_tokens: int = Field(
        256, ge=1, le=2048, description="Hard cap on generated tokens per segment."
    )
    length_factor: float = Field(
        2.0,
        gt=0.0,
        le=10.0,
        description="Per batch, generate at most length_factor x longest source + 10 tokens "
        "(stops runaway loops early; segments are single sentences).",
    )
    no_repeat_ngram_size: int = Field(
        0, ge=0, le=10, description="Forbid repeating n-grams of this size (0: off)."
    )
    repetition_penalty: float = Field(1.0, ge=1.0, le=3.0, description="1.0: off.")

    def as_key(self) -> dict[str, Any]:
        return self.model_dump()


class QualityConfig(BaseModel):
    """Thresholds of the per-example checks in clo.translate.quality."""

    model_config = ConfigDict(extra="forbid")

    min_chars_for_language_id: int = Field(
        24,
        ge=1,
        description="Language-ID only runs on texts with at least this many letters (after "
        "removing code, URLs and numbers): shorter texts are identified unreliably.",
    )
    min_language_confidence: float = Field(
        0.0,
        ge=0.0,
        le=1.0,
        description="If > 0, also require lingua's confidence for the target to reach this.",
    )
    min_length_ratio: float = Field(
        0.25, gt=0.0, description="Minimum UTF-8 byte length of output / source."
    )
    max_length_ratio: float = Field(
        4.0, gt=0.0, description="Maximum UTF-8 byte length of output / source."
    )
    min_bytes_for_length_ratio: int = Field(
        24, ge=1, description="Skip the length-ratio check for sources shorter than this."
    )
    max_ngram_repeats: int = Field(
        4,
        ge=2,
        description="An n-gram (n=1..6) repeated back to back this many times, more often than "
        "in the source, marks a repetition loop.",
    )

    @model_validator(mode="after")
    def _ratios_ordered(self) -> QualityConfig:
        if self.min_length_ratio >= self.max_length_ratio:
            raise ValueError("min_length_ratio must be below max_length_ratio")
        return self


class TranslatorConfig(BaseModel):
    """Everything that decides how seed data is translated (stored on the job)."""

    model_config = ConfigDict(extra="forbid")

    model: str = Field(
        "facebook/m2m100_1.2B",
        description="Hub id or local directory of an M2M100 (facebook/m2m100_418M, "
        "facebook/m2m100_1.2B: the paper) or NLLB-200 model (facebook/nllb-200-distilled-600M, "
        "-1.3B, -3.3B: better for low-resource languages such as Yoruba).",
    )
    revision: str | None = Field(
        None, description="Hub revision (commit) to pin; part of the cache key."
    )
    source_language: str = Field("en", description="Language of the seed data.")
    device: str = Field("auto", description="auto (cuda if present, else cpu), cpu, cuda, cuda:1…")
    dtype: DType = Field(
        "auto", description="auto: bfloat16 on CUDA, float32 on CPU (bf16 matmuls are slow there)."
    )
    decoding: Decoding = Field(
        default_factory=Decoding, description="Beam size, length caps, repetition controls."
    )
    backend: Backend = Field(
        "transformers",
        description="transformers: the model's generate(); ctranslate2: the same model "
        "converted once to CTranslate2 (pip extra ct2), same tokenizer and length caps "
        "(docs/PERFORMANCE.md, translation backends).",
    )
    compute_type: ComputeType = Field(
        "auto",
        description="ctranslate2 only: auto follows dtype (float32 on CPU, bfloat16 on "
        "CUDA); int8 quantizes the weights at load (faster, outputs may differ).",
    )
    ct2_cache_dir: str | None = Field(
        None,
        description="ctranslate2 only: where converted models are kept (default: "
        "$CLO_CT2_CACHE, else ~/.cache/clo/ctranslate2).",
    )
    max_source_tokens: int = Field(
        256,
        ge=8,
        le=1024,
        description="Source segments are truncated to this many tokens; the splitter keeps "
        "segments far below it (MT models degrade past a couple hundred tokens).",
    )
    max_segment_chars: int = Field(
        400, ge=40, description="Sentences longer than this are split at clauses, then words."
    )
    batch_tokens: int = Field(
        4096,
        ge=16,
        description="Token budget per batch: batch size x longest (padded) source length. "
        "Segments are sorted by length so padding stays small.",
    )
    max_batch_size: int = Field(128, ge=1, description="Upper bound on segments per batch.")
    quality_check: QualityMode = Field(
        "drop",
        description="drop: examples failing language-ID/degeneracy checks are dropped (after "
        "one retry, see retry_failed); report: checked and counted but kept; off: not checked "
        "(only for the random-weight tiny demo model, whose output no language ID accepts).",
    )
    retry_failed: bool = Field(
        True,
        description="Re-translate a failing example once with retry_decoding before dropping it.",
    )
    retry_decoding: Decoding = Field(
        default_factory=lambda: Decoding(
            num_beams=5, no_repeat_ngram_size=4, repetition_penalty=1.2
        ),
        description="Decoding for the one retry: wider beam, repeats blocked.",
    )
    quality: QualityConfig = Field(
        default_factory=QualityConfig, description="Thresholds of the quality checks."
    )
    safetensors_only: bool = Field(
        False,
        description="Refuse checkpoints without safetensors weights (hub M2M100 repos may only "
        "ship pytorch_model.bin; transformers loads those with weights_only=True).",
    )

    @model_validator(mode="after")
    def _engine_settings_match(self) -> TranslatorConfig:
        if self.backend != "ctranslate2":
            if self.compute_type != "auto":
                raise ValueError("compute_type applies only to backend 'ctranslate2'")
            if self.ct2_cache_dir is not None:
                raise ValueError("ct2_cache_dir applies only to backend 'ctranslate2'")
        return self
