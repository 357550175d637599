"""What a LoRA extraction starts from: an export (adapter or full model) or a run folder.

`find_source` accepts the folders CLO writes: an adapter export (`adapter_config.json`,
attention-only whole matrices or LoRA), a full/merged model export (`config.json` +
`clo_metadata.json`), a job bundle (`package/bundle`) or a `clo run` / `clo train` output
folder, and finds the base model and, for runs, the held-out quadruples. `trained_tensors`
reads the trained values of the weights the export changes, as the base's state-dict keys.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
from safetensors import safe_open
from safetensors.torch import load_file

from clo.errors import CloError

PEFT_PREFIX = "base_model.model."
SourceKind = Literal["attention", "lora", "full"]
# run layouts: `clo run` / worker workdir, then `clo train --out`
_RUN_EXPORTS = ("package/bundle", "train/adapter", "train/model", "adapter", "model")


@dataclass(frozen=True)
class ExtractionSource:
    """The export to extract from, where its base loads from and its published name."""

    path: Path
    kind: SourceKind
    base_source: str  # what from_pretrained loads (hub id or local folder)
    base_revision: str | None
    base_name: str  # what the job called it (allow-list / hub id), for the card
    heldout: Path | None  # held-out quadruples of the run, when found


def _is_export(folder: Path) -> bool:
    if (folder / "adapter_config.json").is_file():
        return True
    return (folder / "config.json").is_file() and (folder / "clo_metadata.json").is_file()


def _read(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise CloError(f"{path} is not readable JSON: {exc}", param="path") from exc
    return data if isinstance(data, dict) else {}


def _adapter_kind(folder: Path) -> SourceKind:
    config = _read(folder / "adapter_config.json")
    if config.get("peft_type") != "LORA":
        raise CloError(
            f"{folder} holds a {config.get('peft_type')!r} PEFT adapter; only LoRA adapters "
            "(CLO's attention-only and LoRA exports) can be re-expressed as LoRA",
            param="path",
        )
    if config.get("use_dora") or config.get("fan_in_fan_out"):
        raise CloError(f"{folder}: DoRA / fan_in_fan_out adapters are not supported", param="path")
    weights = folder / "adapter_model.safetensors"
    if not weights.is_file():
        raise CloError(f"{folder} has adapter_config.json but no {weights.name}", param="path")
    with safe_open(str(weights), "pt") as f:
        keys = list(f.keys())
    return "lora" if any(".lora_A." in k for k in keys) else "attention"


def _loadable(source: str) -> bool:
    """An existing folder, or a name from_pretrained looks up on the hub (not a path)."""
    return Path(source).is_dir() or not source.startswith(("/", ".", "~"))


def _heldout(root: Path, export: Path) -> Path | None:
    for candidate in (
        root / "train" / "heldout.jsonl",
        export / "heldout.jsonl",
        export.parent / "heldout.jsonl",
    ):
        if candidate.is_file():
            return candidate
    return None


def find_source(
    path: Path, base: str | None = None, base_revision: str | None = None
) -> ExtractionSource:
    """The export in `path` (or the run folder `path`) and its base model; a clear
    CloError (param "path" or "base") when it is not an export or has no known base."""
    path = Path(path)
    if not path.is_dir():
        raise CloError(f"{path} is not a folder", param="path")
    candidates = [path, *(path / sub for sub in _RUN_EXPORTS)]
    export = next((c for c in candidates if _is_export(c)), None)
    if export is None:
        raise CloError(
            f"{path} is not an adapter: it has no adapter_config.json (nor a full-model export "
            "with config.json + clo_metadata.json, nor a run folder with package/bundle or "
            "train/adapter); give the folder an export or `clo run` wrote",
            param="path",
        )
    kind = _adapter_kind(export) if (export / "adapter_config.json").is_file() else "full"
    job = _read(export / "clo_job.json").get("base_model") or {}
    meta = _read(export / "clo_metadata.json")
    adapter = _read(export / "adapter_config.json")
    # the worker's local path means nothing on another machine: skip a missing folder
    options = [job.get("source"), meta.get("base_model"), adapter.get("base_model_name_or_path")]
    source = base or next((s for s in options if s and _loadable(str(s))), job.get("name"))
    if not source:
        raise CloError(
            f"{export} does not say which base model it was trained on; give --base",
            param="base",
        )
    revision = base_revision or (
        None
        if base
        else job.get("revision") or meta.get("base_revision") or adapter.get("revision")
    )
    name = job.get("name") or meta.get("base_model") or str(source)
    return ExtractionSource(export, kind, str(source), revision, str(name), _heldout(path, export))


def _scaling(config: dict[str, Any]) -> float:
    if config.get("rank_pattern") or config.get("alpha_pattern"):
        raise CloError("LoRA adapters with rank_pattern/alpha_pattern are not supported")
    r, alpha = float(config.get("r", 8)), float(config.get("lora_alpha", 8))
    return alpha / (r**0.5) if config.get("use_rslora") else alpha / r


def _adapter_tensors(folder: Path, base: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    config = _read(folder / "adapter_config.json")
    state = load_file(str(folder / "adapter_model.safetensors"))
    scale = _scaling(config)
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        name = key.removeprefix(PEFT_PREFIX)
        name = name.replace(".modules_to_save.default", "").replace(".modules_to_save", "")
        if ".lora_A." in name:
            module = name.split(".lora_A.")[0]
            up = state[key.replace(".lora_A.", ".lora_B.")].float()
            delta = scale * (up @ value.float())
            out[f"{module}.weight"] = base[f"{module}.weight"].float() + delta.to(
                base[f"{module}.weight"].device
            )
            bias = state.get(key.replace(".lora_A.weight", ".lora_B.bias"))
            if bias is not None:
                out[f"{module}.bias"] = base[f"{module}.bias"].float() + scale * bias.float().to(
                    base[f"{module}.bias"].device
                )
        elif ".lora_" in name:
            if ".lora_B." not in name:
                raise CloError(f"{folder}: unsupported LoRA tensor {key}", param="path")
        elif name in base:
            out[name] = value
        else:
            raise CloError(f"{folder}: {key} is not a weight of the base model", param="base")
    return out


def _full_tensors(folder: Path, base: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    files = sorted(folder.glob("*.safetensors"))
    if not files:
        raise CloError(f"{folder} has no .safetensors weights", param="path")
    out: dict[str, torch.Tensor] = {}
    for file in files:
        with safe_open(str(file), "pt") as f:
            for key in f.keys():
                if key in base:
                    out[key] = f.get_tensor(key)
    return out


def trained_tensors(
    source: ExtractionSource, base: dict[str, torch.Tensor]
) -> dict[str, torch.Tensor]:
    """{base state-dict key: trained value} for every weight the export holds, fp32 on
    the base's device (LoRA deltas folded in)."""
    read = _full_tensors if source.kind == "full" else _adapter_tensors
    return {
        key: value.to(base[key].device, torch.float32)
        for key, value in read(source.path, base).items()
    }
