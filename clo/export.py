"""Export a trained model as a stock-PEFT adapter (lora and attention-only) or a merged model
(also later, from an adapter on disk: merge_export; a plain LoRA of any result: clo.lora_extract).

Attention-only training changes whole q/k/v/o matrices, which PEFT expresses as
`modules_to_save` of a LoRA config with no LoRA targets (PEFT's own DUMMY_TARGET_MODULES
marker, which it accepts as "adapter without injected layers"). The adapter then holds only
the attention weights, and `PeftModel.from_pretrained(base, dir)` swaps them in unchanged.

Weights are written in `TrainConfig.export_dtype`: by default ("model") the dtype the base
model ships in (its config.json), whatever dtype training held them in (fp32 master weights
on the worker), so a Llama-2-7B attention adapter is 4.3 GB in fp16 rather than 8.6 GB in
fp32; the model card and clo_metadata.json say which.

Every export is written to a temp dir, then renamed into place; safetensors only; the
sha256 of each file is returned (and written to SHA256SUMS).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any, NotRequired, TypedDict, Unpack

import torch
from safetensors.torch import load_file, save_file
from transformers import PretrainedConfig

from clo.atomic_dir import write_dir_atomically
from clo.card import model_card, published_base
from clo.checksum import write_sha256sums
from clo.config import TrainConfig
from clo.errors import CloError
from clo.trainable import attention_projections

logger = logging.getLogger(__name__)

PEFT_PREFIX = "base_model.model."
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
# dtype choices of a later export (API, CLI): trained = no cast, the dtype the job's export
# holds the trained weights in; the others cast to that dtype
DTYPE_CHOICES: dict[str, str | None] = {
    "trained": None,
    "bf16": "bfloat16",
    "fp16": "float16",
    "fp32": "float32",
}


def dtype_choice(name: str | None) -> str | None:
    """The dtype name a --dtype choice means (None: trained, no cast); long names pass."""
    if name is None or name in DTYPES:
        return name
    if name in DTYPE_CHOICES:
        return DTYPE_CHOICES[name]
    raise CloError(
        f"dtype must be one of {', '.join(DTYPE_CHOICES)} (or {', '.join(DTYPES)}), got {name!r}",
        param="dtype",
    )


def _is_peft(model: Any) -> bool:
    return hasattr(model, "peft_config") and hasattr(model, "get_base_model")


def shipped_dtype(model: Any) -> torch.dtype | None:
    """The dtype in the base model's own config.json (from_pretrained's dtype overwrites
    the loaded config's), or None when it names none or cannot be read."""
    base = model.get_base_model() if _is_peft(model) else model
    source = getattr(base.config, "_name_or_path", None)
    if not source:
        return None
    try:
        raw, _ = PretrainedConfig.get_config_dict(
            source, revision=getattr(base.config, "_commit_hash", None)
        )
    except (OSError, ValueError) as exc:
        logger.warning("cannot read the dtype of %s: %s", source, exc)
        return None
    name = raw.get("dtype") or raw.get("torch_dtype")
    return DTYPES.get(name) if isinstance(name, str) else None


def export_dtype(model: Any, config: TrainConfig) -> torch.dtype:
    """The dtype exported weights are written in (see the module docstring)."""
    if config.export_dtype != "model":
        return DTYPES[config.export_dtype]
    return shipped_dtype(model) or next(model.parameters()).dtype


def _cast(tensors: dict[str, torch.Tensor], dtype: torch.dtype) -> dict[str, torch.Tensor]:
    """CPU copies, floating-point ones in `dtype` (integer buffers keep theirs).

    Tied weights stay one tensor, so save_pretrained still writes them once.
    """
    copies: dict[tuple[int, tuple[int, ...], tuple[int, ...]], torch.Tensor] = {}
    out = {}
    for key, value in tensors.items():
        alias = (value.data_ptr(), tuple(value.shape), value.stride())
        if alias not in copies:
            target = dtype if value.is_floating_point() else value.dtype
            copies[alias] = value.detach().to("cpu", target).contiguous()
        out[key] = copies[alias]
    return out


def _in_dtype(
    tensors: dict[str, torch.Tensor], dtype: torch.dtype
) -> dict[str, torch.Tensor] | None:
    """A full model's state dict in `dtype`; None (save as is) when it already is, so no
    second copy of a large model is made for nothing."""
    if all(v.dtype == dtype for v in tensors.values() if v.is_floating_point()):
        return None
    return _cast(tensors, dtype)


def _record_dtype(folder: Path, dtype: torch.dtype) -> None:
    """config.json names the dtype the weights are written in (save_pretrained writes the
    in-memory model's), so from_pretrained loads them in it."""
    path = folder / "config.json"
    config = json.loads(path.read_text())
    for key in ("dtype", "torch_dtype"):  # torch_dtype: the name before transformers 5
        if key == "dtype" or key in config:
            config[key] = str(dtype).removeprefix("torch.")
    path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")


def _write_atomically(out_dir: Path, write: Callable[[Path], None]) -> dict[str, str]:
    """The export folder, whole with its SHA256SUMS or not at all; returns {file: sha256}."""

    def build(tmp: Path) -> dict[str, str]:
        write(tmp)
        return write_sha256sums(tmp)

    return write_dir_atomically(Path(out_dir), build)


def _attention_adapter(
    model: Any, tmp: Path, meta: ExportMeta, dtype: torch.dtype, config: TrainConfig
) -> None:
    from peft import LoraConfig
    from peft.utils.constants import DUMMY_TARGET_MODULES

    names = attention_projections(model)
    state: dict[str, torch.Tensor] = {}
    for name in names:
        for pname, param in model.get_submodule(name).named_parameters():
            state[f"{PEFT_PREFIX}{name}.{pname}"] = param
    state = _cast(state, dtype)
    cfg = LoraConfig(
        # no LoRA layers, so r/alpha are unused: the training config's, so the files agree
        r=config.lora_r,
        lora_alpha=config.lora_alpha,
        target_modules=DUMMY_TARGET_MODULES,
        modules_to_save=names,
        base_model_name_or_path=published_base(meta["base_model"], meta["base_model"])
        or meta["base_model"],
        revision=meta["base_revision"],
        task_type="CAUSAL_LM",
        inference_mode=True,
    )
    cfg.save_pretrained(str(tmp))
    save_file(state, str(tmp / "adapter_model.safetensors"), metadata={"format": "pt"})


def _lora_adapter(
    model: Any, tmp: Path, meta: ExportMeta, dtype: torch.dtype, config: TrainConfig
) -> None:
    cfg = model.peft_config["default"]
    cfg.base_model_name_or_path = (
        published_base(meta["base_model"], meta["base_model"]) or meta["base_model"]
    )
    cfg.revision = meta["base_revision"]
    model.save_pretrained(str(tmp), safe_serialization=True, save_embedding_layers=False)
    weights = tmp / "adapter_model.safetensors"  # PEFT writes the adapter's own dtype
    save_file(_cast(load_file(str(weights)), dtype), str(weights), metadata={"format": "pt"})


class ExportMeta(TypedDict):
    """What every export records about its training (the keyword arguments of both exports)."""

    config: TrainConfig
    base_model: str
    base_revision: str | None
    data_hash: str
    metrics: dict[str, Any]
    dtype_note: NotRequired[str]  # why the weights have their dtype, for the card


def _metadata(
    tmp: Path, tokenizer: Any, meta: ExportMeta, dtype: torch.dtype, merged: bool = False
) -> None:
    config = meta["config"]
    weights_dtype = str(dtype).removeprefix("torch.")
    tokenizer.save_pretrained(str(tmp))
    (tmp / "training_config.json").write_text(
        json.dumps(config.model_dump(mode="json"), indent=2, sort_keys=True)
    )
    (tmp / "clo_metadata.json").write_text(
        json.dumps(
            {
                "base_model": meta["base_model"],
                "base_revision": meta["base_revision"],
                "data_hash": meta["data_hash"],
                "metrics": meta["metrics"],
                "trainable": config.trainable,
                "method": config.method,
                "export_dtype": weights_dtype,
            },
            indent=2,
            sort_keys=True,
            default=str,
        )
    )
    (tmp / "README.md").write_text(model_card(**meta, merged=merged, weights_dtype=weights_dtype))


def export_adapter(
    model: Any, tokenizer: Any, out_dir: Path, **meta: Unpack[ExportMeta]
) -> dict[str, str]:
    """Write a stock-PEFT adapter dir (lora or attention-only); returns {file: sha256}."""
    config = meta["config"]
    if config.trainable == "full":
        raise CloError(
            "trainable='full' changes every weight, so there is no small adapter; "
            "use export_merged for full fine-tuning"
        )
    if config.trainable == "lora" and not _is_peft(model):
        raise CloError("trainable='lora' but the model carries no PEFT adapter")
    if config.trainable == "attention" and _is_peft(model):
        raise CloError("trainable='attention' but the model is PEFT-wrapped; export it as lora")

    dtype = export_dtype(model, config)

    def write(tmp: Path) -> None:
        write_adapter = _lora_adapter if config.trainable == "lora" else _attention_adapter
        write_adapter(model, tmp, meta, dtype, config)
        _metadata(tmp, tokenizer, meta, dtype)

    sums = _write_atomically(Path(out_dir), write)
    logger.info("adapter exported to %s (%d files)", out_dir, len(sums))
    return sums


def export_merged(
    model: Any, tokenizer: Any, out_dir: Path, **meta: Unpack[ExportMeta]
) -> dict[str, str]:
    """Write a full model AutoModelForCausalLM.from_pretrained loads; returns {file: sha256}.

    LoRA weights are merged for the save and unmerged afterwards, so `model` stays usable.
    """

    dtype = export_dtype(model, meta["config"])

    def write(tmp: Path) -> None:
        if _is_peft(model):
            model.merge_adapter()
            try:
                base = model.get_base_model()
                state = {
                    k.replace(".base_layer", ""): v
                    for k, v in base.state_dict().items()
                    if "lora_" not in k
                }
                base.save_pretrained(
                    str(tmp), state_dict=_in_dtype(state, dtype) or state, safe_serialization=True
                )
            finally:
                model.unmerge_adapter()
        else:
            model.save_pretrained(
                str(tmp), state_dict=_in_dtype(model.state_dict(), dtype), safe_serialization=True
            )
        _record_dtype(tmp, dtype)
        _metadata(tmp, tokenizer, meta, dtype, merged=True)

    sums = _write_atomically(Path(out_dir), write)
    logger.info("merged model exported to %s", out_dir)
    return sums


def merge_export(
    path: Path,
    out_dir: Path,
    base: str | None = None,
    base_revision: str | None = None,
    device: str | None = None,
    dtype: str | None = None,
) -> dict[str, str]:
    """A merged full model from an adapter export (or a run folder) already on disk: base +
    adapter through stock PEFT, merged, written as export_merged writes it (card and
    metadata). For jobs that did not ask for a merged model when they were created.

    `dtype` (a DTYPE_CHOICES key or a dtype name): None / "trained" writes the dtype the
    adapter export holds the trained weights in (its clo_metadata.json export_dtype), else
    casts to the one named; the card says which."""
    from peft import PeftModel

    from clo.loading import load_model_and_tokenizer
    from clo.lora_source import find_source

    source = find_source(path, base, base_revision)
    if source.kind == "full":
        raise CloError(f"{source.path} is a full model already; nothing to merge", param="path")
    try:
        config = TrainConfig.model_validate_json(
            (source.path / "training_config.json").read_text(encoding="utf-8")
        )
        recorded = json.loads((source.path / "clo_metadata.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise CloError(
            f"{source.path} is not a CLO export (training_config.json / clo_metadata.json: {exc})",
            param="path",
        ) from exc
    cast = dtype_choice(dtype)
    trained = recorded.get("export_dtype")
    name = cast or (trained if trained in DTYPES else None)
    if name is not None:
        note = "cast on export" if cast else "the dtype the job exported the trained weights in"
        config = config.model_copy(update={"export_dtype": name})
    else:  # an export from before clo_metadata.json named its dtype: the training's rule
        note = "the training config's export_dtype rule"
    model, tokenizer = load_model_and_tokenizer(
        source.base_source, revision=source.base_revision, dtype=torch.float32, device=device
    )
    merged = PeftModel.from_pretrained(model, str(source.path)).merge_and_unload()
    return export_merged(
        merged,
        tokenizer,
        out_dir,
        dtype_note=note,
        config=config,
        base_model=source.base_name,
        base_revision=source.base_revision,
        data_hash=str(recorded.get("data_hash")),
        metrics=dict(recorded.get("metrics") or {}),
    )
