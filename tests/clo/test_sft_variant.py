"""The SFT variant: both (English + target, the paper's main SFT baseline) by default, any
variant for sft and sft+dpo, and not a setting of clo or dpo."""

import pytest
from pydantic import ValidationError

from clo.config import TrainConfig
from clo.encoding import EN_EN, TGT_TGT
from clo.resolve import train_config
from clo.spec import JobSpec
from clo.step import phase_columns

BASE = {"base_model": "tiny", "target_language": "de", "data_size": 16}


def test_both_is_the_default_sft_variant() -> None:
    assert TrainConfig().sft_variant == "both"
    spec = JobSpec.model_validate({**BASE, "method": "sft"})
    assert spec.sft_variant == "both"
    assert phase_columns(train_config(spec), "sft") == (TGT_TGT, EN_EN)


@pytest.mark.parametrize("method", ["sft", "sft+dpo"])
@pytest.mark.parametrize("variant", ["target", "english", "both"])
def test_every_variant_applies_to_sft_and_the_sft_phase_of_sft_dpo(
    method: str, variant: str
) -> None:
    spec = JobSpec.model_validate({**BASE, "method": method, "sft_variant": variant})
    config = train_config(spec)
    assert config.sft_variant == variant
    assert len(phase_columns(config, "sft")) == (2 if variant == "both" else 1)


@pytest.mark.parametrize("method", ["clo", "dpo"])
def test_clo_and_dpo_take_no_variant(method: str) -> None:
    with pytest.raises(ValidationError, match="only applies to methods 'sft' and 'sft\\+dpo'"):
        JobSpec.model_validate({**BASE, "method": method, "sft_variant": "english"})
    # "target" was the default before "both": specs stored back then still validate
    stored = JobSpec.model_validate({**BASE, "method": method, "sft_variant": "target"})
    assert stored.sft_variant == "both"
    assert JobSpec.model_validate({**BASE, "method": method}).sft_variant == "both"
