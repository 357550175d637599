"""Per-sequence log-probs of response tokens, through the LM head one chunk at a time.

The decoder body runs once over the padded batch; only the hidden states that predict a
response token are gathered, and the LM head runs over them a chunk of tokens at a time, so
`[tokens, vocab]` logits never exist, only one `[chunk, vocab]` buffer at a time.

Memory math behind the default chunk: one chunk's fp32 logits take chunk × vocab × 4 bytes.
With Qwen2's 151,936-entry vocabulary, 256 tokens give 256 × 151,936 × 4 B = 156 MB (1,024
tokens gave 622 MB, and log_softmax plus the backward buffers multiplied that 3-4 times).
Smaller chunks make the head GEMMs thinner for little gain (bench_43m on CPU: 128 tokens took
16% longer per step for 70 MB less); larger ones buy a few percent for 150+ MB per doubling.

Three paths, all giving bit-identical log-probs for the same weights and chunk size (the
reference pass and step 0 of training must agree exactly, so the DPO margin starts at 0):

- no gradient needed (reference pass, evaluation): logits, then max / exp / sum in place in
  the same buffer; nothing is kept.
- frozen linear head (attention-only, LoRA, frozen tied embeddings): `_FrozenHeadLogProbs`.
  d logp(y) / d h = W[y] - softmax(h Wᵀ + b) W, an [tokens, hidden] tensor, is computed in
  the forward from the chunk's buffer and saved instead of any logits: no recompute, two
  head GEMMs per token instead of three.
- trainable head (full fine-tuning, LoRA on the head): each chunk is checkpointed and
  `_TargetLogProb` keeps only the logits (not a log_softmax copy) for the recomputed backward.

A model whose forward changes the head's logits (Gemma-2 soft-capping, Cohere and Granite
scaling: clo.logit_transform) gets the same transform per chunk, in every path; the frozen
path chains its gradient through it (soft-capping costs one more [chunk, vocab] buffer).
"""

from __future__ import annotations

import threading
from typing import Any

import torch
import torch.nn.functional as F
from torch.autograd.function import once_differentiable
from torch.utils.checkpoint import checkpoint

from clo.errors import CloError
from clo.logit_transform import IDENTITY, LogitTransform, model_transform

DEFAULT_CHUNK_TOKENS = 256
_AUTOCAST_ELIGIBLE = (torch.float32, torch.float16, torch.bfloat16)


def _decoder_and_head(model: Any) -> tuple[torch.nn.Module, torch.nn.Module]:
    decoder = model.get_decoder() if hasattr(model, "get_decoder") else None
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    if decoder is None or head is None:
        raise CloError(
            f"{type(model).__name__} does not expose get_decoder()/get_output_embeddings(); "
            "only causal LMs with a decoder body and an LM head are supported"
        )
    return decoder, head


def _is_frozen_linear(head: torch.nn.Module) -> bool:
    """A plain `nn.Linear` (not a quantised or adapter subclass) with nothing to train."""
    return (
        isinstance(head, torch.nn.Linear)
        and type(head).forward is torch.nn.Linear.forward
        and not any(p.requires_grad for p in head.parameters())
    )


def _logp_in_place(logits: torch.Tensor, targets: torch.Tensor, softmax: bool) -> torch.Tensor:
    """log_softmax(logits)[target] per row; overwrites fp32 `logits` (with softmax if asked)."""
    target_logits = logits.gather(1, targets[:, None]).squeeze(1)
    peak = logits.amax(dim=1, keepdim=True)
    total = logits.sub_(peak).exp_().sum(dim=1, keepdim=True)
    if softmax:
        logits.div_(total)
    return target_logits - (peak + total.log()).squeeze(1)


def _chunk_logits(head: torch.nn.Module, hidden: torch.Tensor) -> torch.Tensor:
    # fp32 softmax: bf16 log-probs are too coarse for DPO margins; the GEMM itself runs in the
    # model's (or autocast's) dtype, the same in every path.
    logits: torch.Tensor = head(hidden).float()
    return logits


# Per thread: the [chunk, vocab] fp32 buffer logits are upcast into, kept between calls.
_fp32_buffers = threading.local()


def _upcast(logits: torch.Tensor) -> torch.Tensor:
    """`logits` as fp32, in a buffer this thread reuses (fp32 logits pass through untouched).

    A fresh [chunk, vocab] fp32 tensor per chunk (`.float()`) is larger than glibc's largest
    mmap threshold (32 MB), so each was mapped anew and page-faulted in: torch.profiler put
    the bf16 -> fp32 copy of a 256 x 49,152 chunk at ~59 ms on the 2-core VM (SmolLM2, bf16),
    against ~3 ms into memory already mapped. The buffer is as large as one chunk's logits,
    which every call allocated anyway; reused, it stays mapped. CPU only: CUDA's caching
    allocator already reuses memory.
    """
    if logits.dtype == torch.float32:
        return logits
    if logits.device.type != "cpu":  # a caching allocator hands memory back mapped already
        return logits.float()
    rows, vocab = logits.shape
    buffer: torch.Tensor | None = getattr(_fp32_buffers, "buffer", None)
    if (
        buffer is None
        or buffer.device != logits.device
        or buffer.shape[1] != vocab
        or buffer.shape[0] < rows
    ):
        buffer = torch.empty(rows, vocab, dtype=torch.float32, device=logits.device)
        _fp32_buffers.buffer = buffer
    return buffer[:rows].copy_(logits)


@torch.no_grad()
def _logprobs_no_grad(
    head: torch.nn.Module,
    hidden: torch.Tensor,
    targets: torch.Tensor,
    chunk: int,
    transform: LogitTransform,
) -> torch.Tensor:
    out = torch.empty(targets.numel(), dtype=torch.float32, device=hidden.device)
    for start in range(0, targets.numel(), chunk):
        sl = slice(start, start + chunk)
        logits = transform.apply_(_upcast(head(hidden[sl])))
        out[sl] = _logp_in_place(logits, targets[sl], softmax=False)
    return out


def _gemm_weight(weight: torch.Tensor) -> torch.Tensor:
    """The frozen weight as autocast would cast it, once per call instead of once per chunk.

    Autocast caches casts only of weights that require grad, so a frozen fp32 head would be
    re-cast to bf16 for each chunk's GEMMs; the values are the same either way.
    """
    device_type = weight.device.type
    if torch.is_autocast_enabled(device_type) and weight.dtype in _AUTOCAST_ELIGIBLE:
        return weight.to(torch.get_autocast_dtype(device_type))
    return weight


class _FrozenHeadLogProbs(torch.autograd.Function):
    """Token log-probs through a frozen linear head; saves [tokens, hidden], never logits."""

    @staticmethod
    @torch.amp.custom_fwd(device_type="cuda")  # type: ignore[untyped-decorator]
    def forward(
        ctx: Any,
        hidden: torch.Tensor,
        weight: torch.Tensor,
        bias: torch.Tensor | None,
        targets: torch.Tensor,
        chunk: int,
        transform: LogitTransform,
    ) -> torch.Tensor:
        n = targets.numel()
        out = torch.empty(n, dtype=torch.float32, device=hidden.device)
        # (softmax - onehot(y)) W per token: minus the gradient of logp(y) w.r.t. the hidden
        # state, in fp32 (it is a difference of near-equal terms for confident tokens).
        residual = torch.empty(n, hidden.shape[1], dtype=torch.float32, device=hidden.device)
        minus_one = torch.full((min(chunk, n), 1), -1.0, dtype=torch.float32, device=hidden.device)
        weight = _gemm_weight(weight)
        for start in range(0, n, chunk):
            sl = slice(start, start + chunk)
            tc = targets[sl]
            logits = _upcast(F.linear(hidden[sl], weight, bias))  # the only [chunk, V]
            slope = None
            if transform.scale != 1.0:
                logits.mul_(transform.scale)
            if transform.softcap is not None:
                # d(c·tanh(z/c))/dz = 1 - tanh², kept from before the softmax overwrites it
                logits.div_(transform.softcap).tanh_()
                slope = logits.square().neg_().add_(1.0)
                logits.mul_(transform.softcap)
            out[sl] = _logp_in_place(logits, tc, softmax=True)
            logits.scatter_add_(1, tc[:, None], minus_one[: tc.numel()])
            if slope is not None:
                logits.mul_(slope)
                del slope
            if transform.scale != 1.0:
                logits.mul_(transform.scale)
            # one GEMM (not W[y] - p W) keeps the subtraction in fp32, before any bf16 cast
            residual[sl] = torch.mm(logits.to(weight.dtype), weight)
            del logits
        ctx.hidden_dtype = hidden.dtype
        ctx.save_for_backward(residual)
        return out

    @staticmethod
    @once_differentiable
    @torch.amp.custom_bwd(device_type="cuda")  # type: ignore[untyped-decorator]
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:  # type: ignore[override]
        (residual,) = ctx.saved_tensors
        grad_hidden = residual.mul(-grad.float()[:, None]).to(ctx.hidden_dtype)
        return grad_hidden, None, None, None, None, None


class _TargetLogProb(torch.autograd.Function):
    """log_softmax(logits)[target] that saves the logits only (no log_softmax copy)."""

    @staticmethod
    def forward(ctx: Any, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        # the ops of `_logp_in_place`, out of place: the same bits as the other paths
        target_logits = logits.gather(1, targets[:, None]).squeeze(1)
        peak = logits.amax(dim=1, keepdim=True)
        total = (logits - peak).exp_().sum(dim=1, keepdim=True)
        ctx.save_for_backward(logits, targets, peak, total)
        return target_logits - (peak + total.log()).squeeze(1)

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        logits, targets, peak, total = ctx.saved_tensors
        # d logp(y) / d logits = onehot(y) - softmax, built in a single [chunk, V] buffer
        grad_logits = (logits - peak).exp_().div_(total).mul_(-grad[:, None])
        grad_logits.scatter_add_(1, targets[:, None], grad[:, None])
        return grad_logits, None


def _trainable_head_chunk(
    head: torch.nn.Module, hidden: torch.Tensor, targets: torch.Tensor, transform: LogitTransform
) -> torch.Tensor:
    logits = transform.apply(_chunk_logits(head, hidden))
    out: torch.Tensor = _TargetLogProb.apply(logits, targets)  # type: ignore[no-untyped-call]
    return out


def token_logprobs(
    head: torch.nn.Module,
    hidden: torch.Tensor,
    targets: torch.Tensor,
    chunk_tokens: int = DEFAULT_CHUNK_TOKENS,
    transform: LogitTransform = IDENTITY,
) -> torch.Tensor:
    """fp32 log p(target) [N] of each hidden state [N, H] through `head` and `transform`,
    chunk by chunk."""
    if chunk_tokens < 1:
        raise CloError(f"chunk_tokens must be >= 1, got {chunk_tokens}")
    if targets.numel() == 0:
        return hidden.new_zeros(0, dtype=torch.float32)
    head_trains = any(p.requires_grad for p in head.parameters())
    if not torch.is_grad_enabled() or not (hidden.requires_grad or head_trains):
        return _logprobs_no_grad(head, hidden, targets, chunk_tokens, transform)
    if _is_frozen_linear(head):
        out: torch.Tensor = _FrozenHeadLogProbs.apply(  # type: ignore[no-untyped-call]
            hidden, head.weight, head.bias, targets, chunk_tokens, transform
        )
        return out
    pieces = [
        checkpoint(
            _trainable_head_chunk,
            head,
            hidden[start : start + chunk_tokens],
            targets[start : start + chunk_tokens],
            transform,
            use_reentrant=False,
        )
        for start in range(0, targets.numel(), chunk_tokens)
    ]
    return torch.cat(pieces)


def sequence_logprobs(
    model: Any,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    response_mask: torch.Tensor,
    chunk_tokens: int = DEFAULT_CHUNK_TOKENS,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Summed log-probs [batch] and response token counts [batch] of each sequence.

    `response_mask[b, t]` is True when token t of row b is a response token (its log-prob
    counts); prompt and padding positions are False.
    """
    decoder, head = _decoder_and_head(model)
    transform = model_transform(model, decoder, head)
    hidden = decoder(
        input_ids=input_ids, attention_mask=attention_mask, use_cache=False
    ).last_hidden_state
    # position t predicts token t+1
    target_mask = response_mask[:, 1:]
    rows = target_mask.nonzero(as_tuple=True)[0]
    h = hidden[:, :-1][target_mask]
    targets = input_ids[:, 1:][target_mask]
    token_logps = token_logprobs(head, h, targets, chunk_tokens, transform)
    sums = torch.zeros(input_ids.shape[0], dtype=torch.float32, device=input_ids.device)
    sums = sums.index_add(0, rows, token_logps)
    counts = target_mask.sum(dim=1)
    return sums, counts
