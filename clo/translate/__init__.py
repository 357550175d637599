"""Translation stage: M2M100 / NLLB-200 seed translation, cached, structure-preserving, checked.

Offline demo note: the tiny random-weight model (clo.tiny_m2m100) produces random text that
no language identifier accepts; run it with `quality_check="off"`. Real models use "drop".
"""

from clo.translate.backend import Translator, detect_code_table, make_translator, plan_batches
from clo.translate.cache import FileTranslationCache, TranslationCache, cache_key
from clo.translate.config import Decoding, QualityConfig, TranslatorConfig
from clo.translate.quality import QualityChecker
from clo.translate.stage import TranslationResult, translate_seed

__all__ = [
    "Decoding",
    "FileTranslationCache",
    "QualityChecker",
    "QualityConfig",
    "TranslationCache",
    "TranslationResult",
    "Translator",
    "TranslatorConfig",
    "cache_key",
    "detect_code_table",
    "make_translator",
    "plan_batches",
    "translate_seed",
]
