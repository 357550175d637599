"""How much GPU memory full fine-tuning takes per GPU under FSDP2, before any is allocated.

Per parameter, sharded over the N GPUs (FSDP2 `fully_shard`, clo.distributed_model):
bf16 weights (2 B), fp32 master weights (4 B), AdamW's two fp32 moments (8 B) and fp32
gradients (4 B, FSDP2 reduce-scatters into the fp32 shard): 18 B / N. Counting a bf16
shard next to the fp32 one is an upper bound: FSDP2's mixed precision casts each unit's
gathered weights to bf16 as they are gathered instead (2 B / N less).

Not sharded, for as long as a unit is in flight: the gathered bf16 weights of the root unit
(embeddings, LM head: gathered for the whole forward) and of `prefetch_units` decoder layers
(the one computing and the one being gathered), and in the backward one layer's gathered
bf16 gradients plus their fp32 copy for the reduce-scatter. Activations depend on the batch
and sequence length and are the caller's figure (`activation_bytes`), not guessed here.

`training_memory` adds the one-GPU memory levers (docs/DISTRIBUTED.md): the precision
(fp32: 4 B weights and no master; bf16: 2 B weights for every parameter and fp32 masters
of the trained ones only), the optimizer (AdamW 8 B a trained parameter; bitsandbytes'
AdamW8bit ~2 B: one byte a moment plus an fp32 scale per 256-value block), a trained subset
(attention, LoRA: replicated under DDP, so N ranks do not divide it) and, from a token
count, the activations with and without gradient checkpointing (`activation_bytes`, the
per-layer count clo.activation_policy uses). `python -m clo.memory_estimate` prints the
Llama-2-7B table of docs/DISTRIBUTED.md.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

GIB = 1024**3
# what an "80 GB" A100/H100 reports (81,920 MiB), of which CUDA's context, the allocator's
# fragmentation and NCCL's buffers leave about 90% usable
GPU_80GB_BYTES = 80 * GIB
USABLE_SHARE = 0.9


@dataclass(frozen=True)
class ModelShape:
    """Parameter counts of a Llama-style decoder (what FSDP2 shards by)."""

    layers: int
    layer_params: int  # one decoder layer
    root_params: int  # embeddings, final norm, LM head: the root FSDP unit
    # the widths activations follow (0: unknown; activation_bytes needs them)
    hidden: int = 0
    intermediate: int = 0
    vocab: int = 0

    @property
    def params(self) -> int:
        return self.layers * self.layer_params + self.root_params

    @classmethod
    def llama(
        cls,
        *,
        hidden: int,
        intermediate: int,
        layers: int,
        vocab: int,
        heads: int,
        kv_heads: int,
        tied: bool = False,
    ) -> ModelShape:
        """Llama/Mistral/Qwen2 layout without biases: q/k/v/o, gate/up/down, two RMSNorms."""
        kv = hidden // heads * kv_heads
        attention = 2 * hidden * hidden + 2 * hidden * kv
        layer = attention + 3 * hidden * intermediate + 2 * hidden
        root = vocab * hidden * (1 if tied else 2) + hidden
        return cls(
            layers=layers,
            layer_params=layer,
            root_params=root,
            hidden=hidden,
            intermediate=intermediate,
            vocab=vocab,
        )

    @classmethod
    def from_hf_config(cls, config: Any) -> ModelShape:
        """The shape of a Hugging Face Llama-style config (attribute names as HF's)."""
        heads = config.num_attention_heads
        return cls.llama(
            hidden=config.hidden_size,
            intermediate=config.intermediate_size,
            layers=config.num_hidden_layers,
            vocab=config.vocab_size,
            heads=heads,
            kv_heads=getattr(config, "num_key_value_heads", None) or heads,
            tied=bool(getattr(config, "tie_word_embeddings", False)),
        )


LLAMA_2_7B = ModelShape.llama(
    hidden=4096, intermediate=11008, layers=32, vocab=32000, heads=32, kv_heads=32
)


@dataclass(frozen=True)
class Bytes:
    """Bytes per parameter of each piece of the training state."""

    weights: float = 2  # bf16
    master: float = 4  # fp32
    optimizer: float = 8  # AdamW: two fp32 moments
    grads: float = 4  # fp32 sharded gradient

    @property
    def sharded(self) -> float:
        return self.weights + self.master + self.optimizer + self.grads


@dataclass(frozen=True)
class MemoryEstimate:
    """Per-GPU bytes of full fine-tuning over `gpus` GPUs."""

    gpus: int
    weights: int
    master: int
    optimizer: int
    grads: int
    in_flight: int  # gathered units, not sharded
    activations: int

    @property
    def total(self) -> int:
        return (
            self.weights
            + self.master
            + self.optimizer
            + self.grads
            + self.in_flight
            + self.activations
        )

    def fits(self, gpu_bytes: int = GPU_80GB_BYTES, usable: float = USABLE_SHARE) -> bool:
        return self.total <= gpu_bytes * usable

    def as_gib(self) -> dict[str, float]:
        names = ("weights", "master", "optimizer", "grads", "in_flight", "activations", "total")
        return {name: round(getattr(self, name) / GIB, 2) for name in names}


def _share(total: float, gpus: int) -> int:
    # the largest rank's share (FSDP2 pads dim 0 to N shards)
    return -(-math.ceil(total) // gpus)


def fsdp_full_finetune(
    shape: ModelShape,
    gpus: int,
    *,
    per_param: Bytes = Bytes(),
    activation_bytes: int = 0,
    prefetch_units: int = 2,
) -> MemoryEstimate:
    """Per-GPU memory of full fine-tuning `shape` over `gpus` GPUs with FSDP2 (module doc).

    One GPU is the same sums without sharding: nothing is gathered then, so nothing is in
    flight beyond the state itself.
    """
    if gpus < 1:
        raise ValueError(f"gpus must be >= 1, got {gpus}")
    n = shape.params
    in_flight = 0
    if gpus > 1:
        gathered = (shape.root_params + prefetch_units * shape.layer_params) * per_param.weights
        layer_grads = shape.layer_params * (per_param.weights + per_param.grads)
        in_flight = math.ceil(gathered + layer_grads)
    return MemoryEstimate(
        gpus=gpus,
        weights=_share(n * per_param.weights, gpus),
        master=_share(n * per_param.master, gpus),
        optimizer=_share(n * per_param.optimizer, gpus),
        grads=_share(n * per_param.grads, gpus),
        in_flight=in_flight,
        activations=activation_bytes,
    )


Precision = Literal["fp32", "bf16"]
OptimizerName = Literal["adamw", "adamw_8bit"]
# bitsandbytes' blockwise 8-bit state: per moment one byte a value + an fp32 absmax per
# 256-value block (its optimizers' block size)
ADAMW_8BIT_BYTES = 2 * (1 + 4 / 256)


def state_bytes(precision: Precision = "bf16", optimizer: OptimizerName = "adamw") -> Bytes:
    """Bytes a parameter of each piece of state: weights for every parameter, the rest for
    the trained ones (gradients stay fp32: they accumulate on the fp32 masters)."""
    opt = ADAMW_8BIT_BYTES if optimizer == "adamw_8bit" else 8
    if precision == "fp32":
        return Bytes(weights=4, master=0, optimizer=opt, grads=4)
    return Bytes(weights=2, master=4, optimizer=opt, grads=4)


def activation_bytes(
    shape: ModelShape,
    tokens: int,
    *,
    gradient_checkpointing: bool = False,
    response_tokens: int | None = None,
    chunk_tokens: int = 256,
    value_bytes: int = 2,
) -> int:
    """What autograd keeps for the backward of one micro-batch of `tokens` tokens (all its
    padded rows), per GPU: per decoder layer and token about 12·hidden + 4·intermediate
    values (norm inputs and their fp32 upcasts, q/k/v, attention output, the MLP's gate, up,
    activation and product; SDPA keeps no score matrix); with checkpointing one hidden state
    per layer plus one layer's full set while it is recomputed. The LM head adds its fp32
    logits chunk (3 buffers of chunk x vocab) and the fp32 [response tokens, hidden] input
    (clo.logprobs). `value_bytes`: 2 under bf16 autocast, 4 in fp32."""
    if not (shape.hidden and shape.intermediate and shape.vocab):
        raise ValueError("activation_bytes needs a shape with hidden, intermediate and vocab")
    full_layer = tokens * (12 * shape.hidden + 4 * shape.intermediate) * value_bytes
    if gradient_checkpointing:
        body = shape.layers * tokens * shape.hidden * value_bytes + full_layer
    else:
        body = shape.layers * full_layer
    response = tokens if response_tokens is None else response_tokens
    head = 3 * min(chunk_tokens, max(response, 1)) * shape.vocab * 4
    return body + head + response * shape.hidden * 4


def training_memory(
    shape: ModelShape,
    gpus: int = 1,
    *,
    precision: Precision = "bf16",
    optimizer: OptimizerName = "adamw",
    trainable_params: int | None = None,
    tokens_per_gpu: int = 0,
    gradient_checkpointing: bool = False,
    prefetch_units: int = 2,
) -> MemoryEstimate:
    """Per-GPU training memory with the memory levers (module doc).

    Full fine-tuning (`trainable_params` None or all of them) over several GPUs is sharded
    (FSDP2, as fsdp_full_finetune); a trained subset is replicated on every rank (DDP).
    `tokens_per_gpu`: the padded tokens of one rank's micro-batch (a CLO example is four
    sequences); 0 leaves activations out.
    """
    if gpus < 1:
        raise ValueError(f"gpus must be >= 1, got {gpus}")
    n = shape.params
    trained = n if trainable_params is None else trainable_params
    if not 0 < trained <= n:
        raise ValueError(f"trainable_params must be in 1..{n}, got {trained}")
    per_param = state_bytes(precision, optimizer)
    activations = 0
    if tokens_per_gpu:
        activations = activation_bytes(
            shape,
            tokens_per_gpu,
            gradient_checkpointing=gradient_checkpointing,
            value_bytes=2 if precision == "bf16" else 4,
        )
    if trained == n:
        return fsdp_full_finetune(
            shape,
            gpus,
            per_param=per_param,
            activation_bytes=activations,
            prefetch_units=prefetch_units,
        )
    return MemoryEstimate(
        gpus=gpus,
        weights=math.ceil(n * per_param.weights),
        master=math.ceil(trained * per_param.master),
        optimizer=math.ceil(trained * per_param.optimizer),
        grads=math.ceil(trained * per_param.grads),
        in_flight=0,
        activations=activations,
    )


LEVERS: tuple[tuple[str, Precision, OptimizerName], ...] = (
    ("fp32 AdamW", "fp32", "adamw"),
    ("bf16 + fp32 masters, AdamW", "bf16", "adamw"),
    ("bf16 + fp32 masters, 8-bit AdamW", "bf16", "adamw_8bit"),
)
TABLE_TOKENS = 4 * 512  # one CLO example a GPU: four sequences of 512 tokens


def llama_2_7b_table() -> list[str]:
    """docs/DISTRIBUTED.md's table: Llama-2-7B full fine-tuning on 1/2/4/8 x 80 GB."""
    rows = [
        "| levers | GPUs | weights | master | optimizer | grads | in flight | state GiB "
        "| + act. (ckpt) | + act. (no ckpt) | fits 80 GB (ckpt) |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for label, precision, optimizer in LEVERS:
        for gpus in (1, 2, 4, 8):
            base = training_memory(LLAMA_2_7B, gpus, precision=precision, optimizer=optimizer)
            kw: dict[str, Any] = dict(precision=precision, optimizer=optimizer)
            ckpt = training_memory(
                LLAMA_2_7B, gpus, tokens_per_gpu=TABLE_TOKENS, gradient_checkpointing=True, **kw
            )
            full = training_memory(LLAMA_2_7B, gpus, tokens_per_gpu=TABLE_TOKENS, **kw)
            g = base.as_gib()
            rows.append(
                f"| {label} | {gpus} | {g['weights']:.2f} | {g['master']:.2f} "
                f"| {g['optimizer']:.2f} | {g['grads']:.2f} | {g['in_flight']:.2f} "
                f"| **{g['total']:.2f}** | {ckpt.total / GIB:.2f} | {full.total / GIB:.2f} "
                f"| {'yes' if ckpt.fits() else 'no'} |"
            )
    return rows


if __name__ == "__main__":
    print("\n".join(llama_2_7b_table()))
