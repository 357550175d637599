"""Model cards (README.md) of exports: what was trained, under which license, how to load
and how to serve it.

Front matter follows the Hugging Face model-card metadata: `base_model` is the hub id (not
the worker's local folder), `license` comes from the base model where it is known (its own
card's front matter, else a short table of bases we know), `language` lists the target
language and English. The body says what the adapter is: an attention-only export stores
whole q/k/v/o matrices (PEFT `modules_to_save`), which is exact but not a LoRA, so servers
that take only LoRA need the extracted one (`clo export lora`, clo.lora_extract).
"""

from __future__ import annotations

import json
import os
import re
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from clo.config import TrainConfig

if TYPE_CHECKING:
    from clo.lora_source import ExtractionSource

_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
# (hub id pattern, license id): bases whose license we know; anything else is looked up in
# the base's own card or left out (the base's license applies either way)
KNOWN_LICENSES: tuple[tuple[str, str], ...] = (
    (r"^HuggingFaceTB/SmolLM2?-", "apache-2.0"),
    (r"^Qwen/Qwen2\.5-(?!3B|72B)", "apache-2.0"),
    (r"^Qwen/Qwen2-(?!72B)", "apache-2.0"),
    (r"^mistralai/Mistral-7B", "apache-2.0"),
    (r"^meta-llama/Llama-2-", "llama2"),
    (r"^meta-llama/Meta-Llama-3-", "llama3"),
    (r"^meta-llama/(Meta-)?Llama-3\.1-", "llama3.1"),
    (r"^meta-llama/Llama-3\.2-", "llama3.2"),
)
# vLLM's --max-lora-rank accepts only these values (16 is its default)
_VLLM_RANKS = (8, 16, 32, 64, 128, 256, 320, 512)


def published_base(name: str | None, source: str | None) -> str | None:
    """The base model's hub id: its source when that is one, else the job's name for it
    when that is; None when only a local folder is known."""
    for candidate in (source, name):
        if candidate and _HUB_ID.match(candidate) and not Path(candidate).exists():
            return candidate
    return None


def _front_matter_field(readme: Path, field: str) -> str | None:
    try:
        text = readme.read_text(encoding="utf-8")
    except OSError:
        return None
    head = text.split("\n---", 1)[0] if text.startswith("---") else ""
    match = re.search(rf"^{field}:\s*(\S+)\s*$", head, re.MULTILINE)
    return match.group(1).strip("'\"") if match else None


def base_license(hub_id: str | None, base_source: str | None = None) -> str | None:
    """The base model's license id: from its local card, else KNOWN_LICENSES, else None."""
    if base_source and Path(base_source).is_dir():
        found = _front_matter_field(Path(base_source) / "README.md", "license")
        if found:
            return found
    for pattern, license_id in KNOWN_LICENSES:
        if hub_id and re.match(pattern, hub_id):
            return license_id
    return None


def vllm_max_lora_rank(rank: int) -> int:
    return next((r for r in _VLLM_RANKS if r >= rank), rank)


def _front_matter(
    library: str, base: str, license_id: str | None, languages: Sequence[str]
) -> list[str]:
    lines = ["---", f"library_name: {library}", f"base_model: {base}"]
    if license_id:
        lines.append(f"license: {license_id}")
    if languages:
        lines += ["language:", *(f"- {code}" for code in languages)]
    return [*lines, "pipeline_tag: text-generation", "tags: [clo, cross-lingual]", "---", ""]


def _load_code(base: str, revision: str | None, merged: bool) -> list[str]:
    rev = f", revision={revision!r}" if revision else ""
    if merged:
        return [
            "```python",
            "from transformers import AutoModelForCausalLM",
            "model = AutoModelForCausalLM.from_pretrained('path/to/this/dir')",
            "```",
        ]
    return [
        "```python",
        "from peft import PeftModel",
        "from transformers import AutoModelForCausalLM",
        f"base = AutoModelForCausalLM.from_pretrained({base!r}{rev})",
        "model = PeftModel.from_pretrained(base, 'path/to/this/dir')",
        "```",
    ]


def serve_section(base: str, revision: str | None, kind: str, rank: int | None) -> list[str]:
    """How to serve: a LoRA through vLLM multi-LoRA; an attention-only export by its
    extracted LoRA (or merged); a merged model as a model."""
    rev = f" --revision {revision}" if revision else ""
    if kind == "merged":
        return ["## Serve", "", "```bash", "vllm serve path/to/this/dir", "```", ""]
    lines = ["## Serve", ""]
    folder = "path/to/this/dir"
    if kind == "attention":
        lines += [
            "This folder is served by PEFT only. For vLLM, TGI or llama.cpp extract a plain "
            "LoRA first (the extraction reports its error against this exact adapter):",
            "",
            "```bash",
            "clo export lora path/to/this/dir --rank 16 --out path/to/lora",
            "```",
            "",
        ]
        folder, rank = "path/to/lora", 16
    max_rank = vllm_max_lora_rank(rank or 16)
    lines += [
        "```bash",
        f"vllm serve {base}{rev} --enable-lora --lora-modules clo={folder}"
        + (f" --max-lora-rank {max_rank}" if max_rank != 16 else ""),
        "```",
        "",
        "then ask for model `clo` in OpenAI-compatible requests. TGI takes it as "
        f"`LORA_ADAPTERS=clo={folder}`; llama.cpp converts it with "
        f"`convert_lora_to_gguf.py --base <base model folder> {folder}`.",
        "",
    ]
    return lines


def _format_section(config: TrainConfig) -> list[str]:
    if config.trainable == "attention":
        return [
            "## Adapter format",
            "",
            "Attention-only training changes whole q/k/v/o matrices, so this adapter stores "
            "them as PEFT `modules_to_save` (exact, no LoRA factors). `r`/`lora_alpha` in "
            f"adapter_config.json ({config.lora_r}/{config.lora_alpha}) are copied from "
            "training_config.json and unused: there are no LoRA layers. Servers that load only "
            "LoRA adapters reject `modules_to_save`; see Serve.",
            "",
        ]
    if config.trainable == "lora":
        return [
            "## Adapter format",
            "",
            f"A plain PEFT LoRA adapter, r={config.lora_r}, alpha={config.lora_alpha}.",
            "",
        ]
    return []


def model_card(
    config: TrainConfig,
    base_model: str,
    base_revision: str | None,
    data_hash: str,
    metrics: dict[str, Any],
    merged: bool = False,
    weights_dtype: str | None = None,
    *,
    base_source: str | None = None,
    languages: Sequence[str] = (),
    evaluation: Sequence[str] = (),
    dtype_note: str | None = None,
) -> str:
    """README.md of an export: what was trained on what, license, how to load and serve
    it, the evaluation lines given (markdown) and the final training metrics. `dtype_note`
    says why the weights have their dtype (a later export's --dtype)."""
    hub_id = published_base(base_model, base_source or base_model)
    shown = hub_id or base_model
    license_id = base_license(hub_id, base_source or base_model)
    kind = "merged" if merged else config.trainable
    lines = [
        *_front_matter("transformers" if merged else "peft", shown, license_id, languages),
        f"# CLO adapter for {shown}",
        "",
        "Trained with Cross-Lingual Optimization (CLO, arXiv 2505.14297) so the model answers "
        "in the language of the prompt.",
        "",
        f"- base model: `{shown}`, revision `{base_revision or 'not pinned'}`",
        f"- license: {license_id}, the base model's"
        if license_id
        else "- license: not known here; the base model's license applies",
        f"- method: `{config.method}`, trained: `{config.trainable}`, "
        f"λ={config.lambda_nll}, β={config.beta}, lr={config.learning_rate}",
        f"- seed-data sha256: `{data_hash}`",
    ]
    precision = metrics.get("precision")
    if precision:  # clo.precision: what the training run resolved "auto" to
        detail = (
            ": bf16 frozen weights and matmuls, fp32 master weights for the trained "
            "parameters, fp32 log-softmax and loss"
            if precision == "bf16"
            else ""
        )
        lines.append(f"- trained in `{precision}`{detail}")
    if weights_dtype:
        note = ": the base model's own dtype)" if config.export_dtype == "model" else ")"
        note = f": {dtype_note})" if dtype_note else note
        lines.append(
            f"- weights stored as `{weights_dtype}` (export_dtype={config.export_dtype}{note}"
        )
    lines += ["", *([] if merged else _format_section(config)), *evaluation]
    lines += ["## Load", "", *_load_code(shown, base_revision, merged), ""]
    lines += serve_section(shown, base_revision, kind, config.lora_r)
    lines += ["## Final metrics", ""]
    lines += [
        f"- {k}: {v:.4g}" if isinstance(v, float) else f"- {k}: {v}"
        for k, v in sorted(metrics.items())
    ]
    return "\n".join(lines) + "\n"


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _target_language(folder: Path) -> tuple[str | None, str | None]:
    """(code, name) of the target language from an evaluation report or the job spec."""
    evaluation = _read_json(folder / "evaluation.json")
    code = evaluation.get("target_language") or (
        (_read_json(folder / "clo_job.json").get("spec") or {}).get("target_language")
    )
    if not code:
        return None, None
    from clo.errors import CloError
    from clo.languages import get_language

    try:
        language = get_language(str(code))
    except CloError:  # an unknown code still names the language in the card
        return str(code), str(code)
    return language.code, language.name


def _extraction_section(report: dict[str, Any]) -> list[str]:
    overall = report["overall"]["relative_error"]
    lines = [
        "## Extraction",
        "",
        f"Extracted by truncated SVD of each projection's weight change (rank {report['rank']}, "
        f"alpha {report['alpha']:g}) from the {report['source']['kind']} export; "
        f"target modules {', '.join(report['target_modules'])}. Relative Frobenius error of "
        f"the weight change: {overall:.3g} overall (per projection in extraction.json).",
    ]
    logprob = report.get("logprob")
    if logprob:
        lines.append(
            f"Mean |Δ log p| per sequence against the exact adapter: "
            f"{logprob['mean_abs_delta']:.3g} (max {logprob['max_abs_delta']:.3g}) over "
            f"{logprob['sequences']} sequences ({logprob['scored']}); training itself moved "
            f"them by {logprob['exact_vs_base_mean_abs_delta']:.3g} on average."
        )
    if report.get("not_represented"):
        lines.append(
            f"Not representable as LoRA and left out: {len(report['not_represented'])} "
            "tensors (biases, norms or embeddings; listed with their relative change in "
            "extraction.json)."
        )
    return [*lines, ""]


def extraction_card(source: ExtractionSource, report: dict[str, Any], folder: Path) -> str:
    """README.md of an extracted LoRA adapter written in `folder`."""
    hub_id = published_base(source.base_name, source.base_source)
    shown = hub_id or source.base_name
    license_id = base_license(hub_id, source.base_source)
    code, name = _target_language(folder)
    evaluation: list[str] = []
    if code and name and (folder / "evaluation.json").is_file():
        from clo.evaluate.card import evaluation_section

        evaluation = evaluation_section(_read_json(folder / "evaluation.json"), name)
        evaluation.insert(2, "Measured on the exact adapter this LoRA was extracted from.")
        evaluation.insert(3, "")
    meta = _read_json(folder / "clo_metadata.json")
    lines = [
        *_front_matter("peft", shown, license_id, [code, "en"] if code else []),
        f"# CLO LoRA adapter for {shown}",
        "",
        "Trained with Cross-Lingual Optimization (CLO, arXiv 2505.14297) so the model answers "
        "in the language of the prompt; a plain PEFT LoRA (no `modules_to_save`) that vLLM, "
        "TGI and llama.cpp load.",
        "",
        f"- base model: `{shown}`, revision `{source.base_revision or 'not pinned'}`",
        f"- license: {license_id}, the base model's"
        if license_id
        else "- license: not known here; the base model's license applies",
        f"- trained: `{meta.get('trainable', source.kind)}`, method `{meta.get('method')}`, "
        f"seed-data sha256 `{meta.get('data_hash')}`",
        f"- LoRA r={report['rank']}, alpha={report['alpha']:g}, weights `{report['dtype']}` "
        + (
            "(cast on export)"
            if report.get("dtype_source") == "cast"
            else "(the dtype the job exported the trained weights in)"
        ),
        "",
        *_extraction_section(report),
        *evaluation,
        "## Load",
        "",
        *_load_code(shown, source.base_revision, merged=False),
        "",
        *serve_section(shown, source.base_revision, "lora", int(report["rank"])),
    ]
    return "\n".join(lines) + "\n"


def publish_adapter_config(folder: Path, hub_id: str | None, revision: str | None) -> None:
    """Point adapter_config.json's base_model_name_or_path at the hub id (not the worker's
    folder) when one is known. A new file renamed over the old: bundle files are hard links
    to the export's, which must not change."""
    path = Path(folder) / "adapter_config.json"
    if hub_id is None or not path.is_file():
        return
    config = json.loads(path.read_text(encoding="utf-8"))
    config["base_model_name_or_path"] = hub_id
    config["revision"] = revision
    tmp = path.with_name(f".adapter_config.json.{uuid.uuid4().hex}.partial")
    try:
        tmp.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
