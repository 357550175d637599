"""Model cards name the base by its hub id with its license, say how to load and serve the
adapter, and the attention-only adapter's config agrees with its training config."""

import json
import os
from pathlib import Path

import pytest
from transformers import AutoModelForCausalLM, AutoTokenizer

from clo.card import base_license, extraction_card, publish_adapter_config, published_base
from clo.config import TrainConfig
from clo.export import export_adapter
from clo.lora_source import ExtractionSource
from tests.support.threads import one_torch_thread  # noqa: F401  (autouse)

SMOLLM2 = "HuggingFaceTB/SmolLM2-135M-Instruct"
CFG = TrainConfig(trainable="attention", lora_r=16, lora_alpha=32)


def front_matter(card: str) -> str:
    assert card.startswith("---\n")
    return card.split("---\n")[1]


@pytest.fixture(scope="module")
def attention_export(tiny_qwen2: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("export") / "adapter"
    model = AutoModelForCausalLM.from_pretrained(tiny_qwen2)
    tok = AutoTokenizer.from_pretrained(tiny_qwen2)
    meta = dict(base_model=SMOLLM2, base_revision="c" * 40, data_hash="0" * 64, metrics={})
    export_adapter(model, tok, out, config=CFG, **meta)
    return out


def test_attention_adapter_config_agrees_with_training_config(attention_export: Path) -> None:
    adapter = json.loads((attention_export / "adapter_config.json").read_text())
    training = json.loads((attention_export / "training_config.json").read_text())
    assert (adapter["r"], adapter["lora_alpha"]) == (training["lora_r"], training["lora_alpha"])
    assert adapter["base_model_name_or_path"] == SMOLLM2 and adapter["revision"] == "c" * 40
    card = (attention_export / "README.md").read_text()
    assert "not a LoRA" in card or "no LoRA layers" in card
    assert "clo export lora path/to/this/dir --rank 16" in card  # how to serve it anyway


def test_card_front_matter_has_hub_id_and_license(attention_export: Path) -> None:
    card = (attention_export / "README.md").read_text()
    head = front_matter(card)
    assert f"base_model: {SMOLLM2}\n" in head and "license: apache-2.0\n" in head
    assert "library_name: peft" in head
    assert f"from_pretrained({SMOLLM2!r}, revision='{'c' * 40}')" in card
    assert f"vllm serve {SMOLLM2} --revision {'c' * 40} --enable-lora" in card


def test_license_comes_from_the_local_base_card_or_is_left_out(tmp_path: Path) -> None:
    (tmp_path / "README.md").write_text("---\nlicense: mit\nlanguage: en\n---\n# A model\n")
    assert base_license(None, str(tmp_path)) == "mit"
    assert base_license("someorg/some-model") is None
    assert base_license("Qwen/Qwen2.5-7B-Instruct") == "apache-2.0"
    assert base_license("Qwen/Qwen2.5-3B-Instruct") is None  # Qwen research license, not ours


def test_published_base_prefers_a_hub_id_over_a_local_folder(tmp_path: Path) -> None:
    assert published_base(SMOLLM2, str(tmp_path)) == SMOLLM2  # allow-list name is a hub id
    assert published_base("smollm", SMOLLM2) == SMOLLM2  # source is a hub id
    assert published_base("tiny", str(tmp_path)) is None  # only a local folder is known


def test_publishing_the_config_leaves_the_hard_linked_export_alone(
    attention_export: Path, tmp_path: Path
) -> None:
    local = json.loads((attention_export / "adapter_config.json").read_text())
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    os.link(attention_export / "adapter_config.json", bundle / "adapter_config.json")
    publish_adapter_config(bundle, "org/published", "d" * 40)
    published = json.loads((bundle / "adapter_config.json").read_text())
    assert published["base_model_name_or_path"] == "org/published"
    assert published["revision"] == "d" * 40
    assert json.loads((attention_export / "adapter_config.json").read_text()) == local


def test_extraction_card_carries_language_and_headline_numbers(tmp_path: Path) -> None:
    evaluation = {
        "target_language": "de",
        "prompt_sources": ["heldout"],
        "config": {"max_new_tokens": 32},
        "versus_base": {
            "metrics": {
                "usable_rate_target": {"base": 0.25, "trained": 0.5, "delta": 0.25},
            }
        },
    }
    (tmp_path / "evaluation.json").write_text(json.dumps(evaluation))
    source = ExtractionSource(tmp_path, "attention", "/worker/models/x", None, SMOLLM2, None)
    report = {
        "rank": 8,
        "alpha": 8,
        "dtype": "bfloat16",
        "source": {"kind": "attention"},
        "target_modules": ["q_proj", "v_proj"],
        "overall": {"relative_error": 0.125},
        "logprob": None,
        "not_represented": {"model.layers.0.self_attn.q_proj.bias": 0.01},
    }
    card = extraction_card(source, report, tmp_path)
    head = front_matter(card)
    assert "language:\n- de\n- en\n" in head and f"base_model: {SMOLLM2}\n" in head
    assert "/worker/models" not in card
    assert "| usable answers in German to German prompts | 25.0% | 50.0% | +25.0 pts |" in card
    assert "0.125 overall" in card and "1 tensors" in card
    assert "--lora-modules clo=path/to/this/dir" in card and "modules_to_save" in card
