"""Fixtures of the translation tests: tiny M2M100 / NLLB models built once per session."""

from pathlib import Path

import pytest

from clo.translate import Decoding, Translator, TranslatorConfig
from tests.support.threads import one_torch_thread  # noqa: F401  (autouse)


@pytest.fixture(scope="session")
def tiny_m2m100(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random-weight M2M100 with a locally trained sentencepiece tokenizer."""
    from clo.tiny_m2m100 import build_tiny_m2m100

    return build_tiny_m2m100(tmp_path_factory.mktemp("tiny_m2m100"))


@pytest.fixture(scope="session")
def tiny_nllb(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from clo.tiny_m2m100 import build_tiny_nllb

    return build_tiny_nllb(tmp_path_factory.mktemp("tiny_nllb"))


@pytest.fixture(scope="session")
def greedy_translator(tiny_m2m100: Path) -> Translator:
    """The tiny M2M100 on CPU, greedy decoding, quality checks off (its output is random)."""
    config = TranslatorConfig(
        model=str(tiny_m2m100),
        device="cpu",
        decoding=Decoding(num_beams=1),
        quality_check="off",
    )
    return Translator(config)


@pytest.fixture
def make_translator(tiny_m2m100: Path):
    """Build a Translator over the tiny M2M100 with config overrides (fresh call counter)."""

    def make(**overrides) -> Translator:
        settings = {
            "model": str(tiny_m2m100),
            "device": "cpu",
            "decoding": Decoding(num_beams=1),
            "quality_check": "off",
        }
        settings.update(overrides)
        return Translator(TranslatorConfig(**settings))

    return make
