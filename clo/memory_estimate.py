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
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

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
        return cls(layers=layers, layer_params=layer, root_params=root)

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

    weights: int = 2  # bf16
    master: int = 4  # fp32
    optimizer: int = 8  # AdamW: two fp32 moments
    grads: int = 4  # fp32 sharded gradient

    @property
    def sharded(self) -> int:
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


def _share(total: int, gpus: int) -> int:
    return -(-total // gpus)  # the largest rank's share (FSDP2 pads dim 0 to N shards)


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
        in_flight = gathered + layer_grads
    return MemoryEstimate(
        gpus=gpus,
        weights=_share(n * per_param.weights, gpus),
        master=_share(n * per_param.master, gpus),
        optimizer=_share(n * per_param.optimizer, gpus),
        grads=_share(n * per_param.grads, gpus),
        in_flight=in_flight,
        activations=activation_bytes,
    )
