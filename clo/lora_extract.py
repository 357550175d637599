"""A plain PEFT LoRA adapter, extracted from any CLO result by truncated SVD of the weights'
change, so servers that take only LoRA (vLLM and TGI multi-LoRA, llama.cpp's converter)
can serve an attention-only or full fine-tune.

Per linear projection the training changed, delta = W_trained - W_base is cut to its top-r
singular triplets U_r S_r V_rᵀ and split evenly: B = U_r·sqrt(S_r/s), A = sqrt(S_r/s)·V_rᵀ
with s = alpha/r, so PEFT's s·B@A is exactly the rank-r approximation. Every projection of a
changed kind (q_proj, ...) gets factors (zeros where unchanged), so `target_modules` is the
short names servers expect and the config has no `modules_to_save`.

What LoRA cannot hold (biases unless `lora_bias`, norms, embeddings, the LM head) is left
out and listed with its relative change. The report (extraction.json, and the model card)
gives per projection and overall the relative Frobenius error of the written factors, and
the mean |Δ log p| per held-out sequence of the extracted adapter against the exact one,
both loaded through stock PEFT as a user would.
"""

from __future__ import annotations

import logging
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
from safetensors.torch import save_file

from clo.atomic_dir import write_dir_atomically, write_json_atomic
from clo.checksum import write_sha256sums
from clo.encoding import EncodedSequence, encode_quads, pad_token_id
from clo.errors import CloError
from clo.export import dtype_choice
from clo.loading import DTYPES, free_memory, load_model_and_tokenizer
from clo.lora_source import PEFT_PREFIX, ExtractionSource, find_source, trained_tensors
from clo.reference import compute_logps

logger = logging.getLogger(__name__)

REPORT_NAME = "extraction.json"
REPORT_VERSION = 1
# files of the source export that describe the adapter's weights, not its training
_NOT_COPIED = {
    "adapter_config.json",
    "adapter_model.safetensors",
    "README.md",
    "SHA256SUMS",
    "config.json",
    "generation_config.json",
    "model.safetensors.index.json",
}
# randomized SVD (torch.svd_lowrank) only pays for large matrices and small ranks
_LOWRANK_MIN_DIM = 1024


@dataclass(frozen=True)
class ExtractOptions:
    """How to extract: a rank (or the smallest rank keeping `energy` of every projection's
    squared singular values, at most `rank`), alpha (default: the rank, PEFT scaling 1)."""

    rank: int | None = 16
    energy: float | None = None
    alpha: int | None = None
    lora_bias: bool = False  # bias deltas as PEFT lora_bias (exact, but not every server reads it)
    svd: Literal["auto", "full", "lowrank"] = "auto"
    dtype: str | None = None  # None / "trained": the source export's; bf16 | fp16 | fp32 cast
    heldout: Path | None = None  # quadruples JSONL; default: the run's held-out file
    texts: tuple[str, ...] = ()  # or plain texts, scored whole
    limit: int = 64  # held-out examples scored at most
    device: str | None = None


def _check(opts: ExtractOptions) -> None:
    if opts.rank is None and opts.energy is None:
        raise CloError("give a rank or an energy threshold", param="rank")
    if opts.rank is not None and opts.rank < 1:
        raise CloError(f"rank must be at least 1, got {opts.rank}", param="rank")
    if opts.energy is not None and not 0 < opts.energy <= 1:
        raise CloError(f"energy must be in (0, 1], got {opts.energy}", param="energy")
    if opts.alpha is not None and opts.alpha <= 0:
        raise CloError(f"alpha must be positive, got {opts.alpha}", param="alpha")
    dtype_choice(opts.dtype)  # a CloError (param dtype) for an unknown name
    if opts.limit < 1:
        raise CloError("limit must be at least 1", param="limit")


def _targets(
    model: Any, base: dict[str, torch.Tensor], trained: dict[str, torch.Tensor]
) -> list[str]:
    """Every linear module (not the LM head) whose kind (short name) training changed."""
    head = model.get_output_embeddings()
    linear = [
        name
        for name, module in model.named_modules()
        if isinstance(module, torch.nn.Linear) and module is not head
    ]
    changed = {
        name.rsplit(".", 1)[-1]
        for name in linear
        if f"{name}.weight" in trained
        and not torch.equal(trained[f"{name}.weight"], base[f"{name}.weight"].float())
    }
    return [name for name in linear if name.rsplit(".", 1)[-1] in changed]


def _delta(
    name: str, base: dict[str, torch.Tensor], trained: dict[str, torch.Tensor]
) -> torch.Tensor:
    key = f"{name}.weight"
    weight = base[key].float()
    return trained[key] - weight if key in trained else torch.zeros_like(weight)


def _energy_rank(deltas: dict[str, torch.Tensor], energy: float, cap: int) -> int:
    """The smallest rank keeping `energy` of every projection's squared singular values."""
    need = 1
    for delta in deltas.values():
        s2 = torch.linalg.svdvals(delta).double() ** 2
        if s2.sum() == 0:
            continue
        kept = s2.cumsum(0) / s2.sum()
        need = max(need, int((kept < energy - 1e-12).sum()) + 1)
    return min(need, cap)


def _factors(
    delta: torch.Tensor, rank: int, scale: float, method: str
) -> tuple[torch.Tensor, torch.Tensor]:
    """(A [rank, in], B [out, rank]) with scale·B@A the best rank-`rank` approximation;
    zero rows/columns past the matrix's own rank."""
    out_dim, in_dim = delta.shape
    k = min(rank, out_dim, in_dim)
    if method == "lowrank" or (
        method == "auto"
        and min(out_dim, in_dim) >= _LOWRANK_MIN_DIM
        and 4 * k <= min(out_dim, in_dim)
    ):
        u, s, v = torch.svd_lowrank(delta, q=min(k + 10, out_dim, in_dim), niter=6)
        vh = v.T
    else:
        u, s, vh = torch.linalg.svd(delta, full_matrices=False)
    root = (s[:k] / scale).sqrt()
    down = delta.new_zeros(rank, in_dim)
    up = delta.new_zeros(out_dim, rank)
    down[:k] = root[:, None] * vh[:k]
    up[:, :k] = u[:, :k] * root
    return down, up


def _source_dtype(source: ExtractionSource) -> torch.dtype:
    from safetensors import safe_open

    files = (
        [source.path / "adapter_model.safetensors"]
        if source.kind != "full"
        else sorted(source.path.glob("*.safetensors"))
    )
    with safe_open(str(files[0]), "pt") as f:
        first = next(iter(f.keys()), None)
        dtype = f.get_tensor(first).dtype if first is not None else torch.float32
    return dtype if dtype.is_floating_point else torch.float32


def _encoded(
    tokenizer: Any, source: ExtractionSource, opts: ExtractOptions
) -> tuple[list[tuple[EncodedSequence, ...]], str | None]:
    """Held-out sequences to score (quadruples, else texts) and what they are."""
    import json

    if opts.texts:
        seqs = [list(tokenizer(t)["input_ids"]) for t in opts.texts[: opts.limit]]
        return [(EncodedSequence(tuple(ids), 1),) for ids in seqs if len(ids) > 1], "given texts"
    path = opts.heldout or source.heldout
    if path is None:
        return [], None
    from clo.seed import load_parallel_jsonl

    quads = load_parallel_jsonl(path)[: opts.limit]
    cfg_path = source.path / "training_config.json"
    cfg = json.loads(cfg_path.read_text()) if cfg_path.is_file() else {}
    encoded, _ = encode_quads(
        tokenizer, quads, int(cfg.get("max_length", 512)), int(cfg.get("max_prompt_length", 256))
    )
    return encoded, f"held-out quadruples ({Path(path).name}, 4 sequences each)"


def _scores(model: Any, encoded: list[tuple[EncodedSequence, ...]], pad: int) -> torch.Tensor:
    logps, _ = compute_logps(model, encoded, pad, batch_size=4)
    return logps.flatten().double()


def _logprob_report(
    model: Any, tokenizer: Any, source: ExtractionSource, adapter: Path, opts: ExtractOptions
) -> dict[str, Any] | None:
    """Mean / max |Δ log p| per sequence: extracted vs exact, and exact vs base for scale."""
    from peft import PeftModel

    encoded, what = _encoded(tokenizer, source, opts)
    if not encoded:
        return None
    pad = pad_token_id(tokenizer)
    base = _scores(model, encoded, pad)
    wrapped = PeftModel.from_pretrained(model, str(adapter))
    extracted = _scores(wrapped, encoded, pad)
    model = wrapped.unload()  # the bare base again, for the exact adapter
    if source.kind == "full":
        del model
        free_memory()
        exact_model, _ = load_model_and_tokenizer(
            source.path, dtype=torch.float32, device=opts.device
        )
    else:
        exact_model = PeftModel.from_pretrained(model, str(source.path))
    exact = _scores(exact_model, encoded, pad)
    gap = (extracted - exact).abs()
    return {
        "scored": what,
        "sequences": int(gap.numel()),
        "mean_abs_delta": float(gap.mean()),
        "max_abs_delta": float(gap.max()),
        "exact_vs_base_mean_abs_delta": float((exact - base).abs().mean()),
    }


def _copy_metadata(source: Path, out: Path) -> None:
    for item in source.iterdir():
        if item.is_file() and item.name not in _NOT_COPIED and not item.name.startswith("model"):
            shutil.copy2(item, out / item.name)


def extract_lora(
    path: Path,
    out_dir: Path,
    opts: ExtractOptions | None = None,
    base: str | None = None,
    base_revision: str | None = None,
) -> dict[str, Any]:
    """Write a plain LoRA adapter for the export (or run folder) `path` to `out_dir`;
    returns the extraction report (also written as extraction.json) with the file sums."""
    from peft import LoraConfig

    from clo.card import extraction_card, published_base

    opts = opts or ExtractOptions()
    _check(opts)
    source = find_source(path, base, base_revision)
    model, tokenizer = load_model_and_tokenizer(
        source.base_source, revision=source.base_revision, dtype=torch.float32, device=opts.device
    )
    base_state = dict(model.state_dict())
    trained = trained_tensors(source, base_state)
    targets = _targets(model, base_state, trained)
    if not targets:
        raise CloError(
            f"{source.path}: no linear projection differs from the base model", param="path"
        )
    deltas = {name: _delta(name, base_state, trained) for name in targets}
    max_rank = max(min(d.shape) for d in deltas.values())
    if opts.rank is not None and opts.rank > max_rank:
        raise CloError(
            f"rank {opts.rank} exceeds the largest projection's smaller dimension ({max_rank}); "
            f"use 1..{max_rank}",
            param="rank",
        )
    cap = opts.rank or max_rank
    rank = _energy_rank(deltas, opts.energy, cap) if opts.energy is not None else cap
    alpha = int(opts.alpha or rank)
    scale = alpha / rank
    cast = dtype_choice(opts.dtype)
    dtype = DTYPES[cast] if cast else _source_dtype(source)

    tensors: dict[str, torch.Tensor] = {}
    projections: dict[str, dict[str, Any]] = {}
    err2 = norm2 = 0.0
    for name, delta in deltas.items():
        down, up = (t.to(dtype) for t in _factors(delta, rank, scale, opts.svd))
        tensors[f"{PEFT_PREFIX}{name}.lora_A.weight"] = down.cpu().contiguous()
        tensors[f"{PEFT_PREFIX}{name}.lora_B.weight"] = up.cpu().contiguous()
        residual = float(torch.linalg.norm(delta - scale * (up.float() @ down.float())))
        norm = float(torch.linalg.norm(delta))
        err2, norm2 = err2 + residual**2, norm2 + norm**2
        projections[name] = {
            "shape": list(delta.shape),
            "delta_norm": norm,
            "relative_error": residual / norm if norm > 0 else 0.0,
        }
    covered = {f"{n}.weight" for n in targets}
    not_represented: dict[str, float] = {}
    for key, value in trained.items():
        old = base_state[key].float()
        change = float(torch.linalg.norm(value - old))
        if key in covered or change == 0:
            continue
        module = key.removesuffix(".bias")
        if opts.lora_bias and key.endswith(".bias") and module in deltas:
            tensors[f"{PEFT_PREFIX}{module}.lora_B.bias"] = ((value - old) / scale).to(dtype).cpu()
            continue
        not_represented[key] = change / max(float(torch.linalg.norm(old)), 1e-12)
    if opts.lora_bias:  # every targeted layer gets a lora_B bias in PEFT: zeros where none
        for name, delta in deltas.items():
            tensors.setdefault(
                f"{PEFT_PREFIX}{name}.lora_B.bias", delta.new_zeros(delta.shape[0]).to(dtype).cpu()
            )
    del trained, deltas

    report: dict[str, Any] = {
        "version": REPORT_VERSION,
        "source": {"path": str(source.path), "kind": source.kind},
        "base_model": {
            "name": source.base_name,
            "source": source.base_source,
            "revision": source.base_revision,
        },
        "rank": rank,
        "alpha": alpha,
        "energy_threshold": opts.energy,
        "dtype": str(dtype).removeprefix("torch."),
        # trained: the dtype the source export holds the trained weights in; cast: asked for
        "dtype_source": "cast" if cast else "trained",
        "lora_bias": opts.lora_bias,
        "target_modules": sorted({n.rsplit(".", 1)[-1] for n in targets}),
        "overall": {"relative_error": (err2 / norm2) ** 0.5 if norm2 > 0 else 0.0},
        "projections": projections,
        "not_represented": not_represented,
        "logprob": None,
    }
    hub_id = published_base(source.base_name, source.base_source)

    def build(tmp: Path) -> dict[str, str]:
        LoraConfig(
            r=rank,
            lora_alpha=alpha,
            target_modules=report["target_modules"],
            lora_dropout=0.0,
            bias="none",
            lora_bias=opts.lora_bias,
            task_type="CAUSAL_LM",
            base_model_name_or_path=hub_id or source.base_name,
            revision=source.base_revision,
            inference_mode=True,
        ).save_pretrained(str(tmp))
        save_file(tensors, str(tmp / "adapter_model.safetensors"), metadata={"format": "pt"})
        report["logprob"] = _logprob_report(model, tokenizer, source, tmp, opts)
        _copy_metadata(source.path, tmp)
        write_json_atomic(tmp / REPORT_NAME, report)
        (tmp / "README.md").write_text(extraction_card(source, report, tmp), encoding="utf-8")
        return write_sha256sums(tmp)

    sums = write_dir_atomically(Path(out_dir), build)
    logger.info(
        "LoRA r=%d extracted to %s: relative error %.3g",
        rank,
        out_dir,
        report["overall"]["relative_error"],
    )
    return {**report, "files": sums}
