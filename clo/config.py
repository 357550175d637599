"""Typed training configuration, stored verbatim on every job (like TRL's DPOConfig)."""

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

Method = Literal["clo", "sft", "sft+dpo", "dpo"]
SftVariant = Literal["target", "english", "both"]
Trainable = Literal["attention", "lora", "full"]
PreferenceLoss = Literal["sigmoid", "ipo", "hinge"]
Schedule = Literal["cosine", "linear", "constant"]
ExportDtype = Literal["model", "bfloat16", "float16", "float32"]
PrecisionSetting = Literal["auto", "fp32", "bf16"]
OptimizerName = Literal["adamw", "adamw_8bit"]

# Fields a stored config may still carry but that mean nothing now; dropped on load.
# sft_steps_fraction: sft+dpo split one pass over the data between its phases; each phase
# now runs over all of it (METHOD.md, Baselines).
RETIRED_FIELDS = ("sft_steps_fraction",)


class TrainConfig(BaseModel):
    """Every knob of one training run; defaults follow the paper (METHOD.md) or say (ours)."""

    model_config = ConfigDict(extra="forbid")

    method: Method = Field(
        "clo",
        description="clo (paper), sft, sft+dpo (SFT over all the data, then DPO over all the "
        "pairs against the SFT model, with a fresh optimizer), dpo.",
    )
    sft_variant: SftVariant = Field(
        "both",
        description="For sft and the SFT phase of sft+dpo: train on target-language, English, "
        "or both responses (both: the paper's main SFT baseline).",
    )
    trainable: Trainable = Field(
        "attention", description="attention: q/k/v/o only (paper); lora: PEFT LoRA on them; full."
    )
    lambda_nll: float = Field(
        0.5, ge=0.0, le=1.0, description="λ in λ·NLL + (1−λ)·CL (paper: 0.5)."
    )
    beta: float = Field(0.1, gt=0.0, le=10.0, description="DPO temperature β (ours: TRL default).")
    preference_loss: PreferenceLoss = Field("sigmoid", description="DPO variant for the CL term.")
    english_nll: bool = Field(
        False, description="Ablation: add English-response NLL (paper: brings English bias back)."
    )
    learning_rate: float = Field(5e-6, gt=0.0, le=1.0, description="Peak AdamW learning rate.")
    weight_decay: float = Field(0.0, ge=0.0, le=1.0, description="AdamW weight decay.")
    optimizer: OptimizerName = Field(
        "adamw",
        description="adamw: torch AdamW (fp32 moments, 8 B a trainable parameter); adamw_8bit: "
        "bitsandbytes AdamW8bit (8-bit moments, ~2 B), CUDA only (clo.optimizers).",
    )
    adam_betas: tuple[float, float] = Field((0.9, 0.999), description="AdamW (β1, β2).")
    warmup_ratio: float = Field(0.1, ge=0.0, lt=1.0, description="Share of steps warming up.")
    schedule: Schedule = Field("cosine", description="Decay after warmup.")
    epochs: float = Field(
        1.0, gt=0.0, le=100.0, description="Passes over the training pairs (per phase of sft+dpo)."
    )
    max_steps: int | None = Field(
        None,
        ge=1,
        description="Stop after this many optimizer steps (sft+dpo: in all, half per phase).",
    )
    batch_size: int = Field(4, ge=1, le=1024, description="Examples (quadruples) per micro-batch.")
    grad_accum: int = Field(1, ge=1, le=1024, description="Micro-batches per optimizer step.")
    max_grad_norm: float | None = Field(1.0, gt=0.0, description="Gradient clipping; None: off.")
    group_by_length: bool = Field(
        True,
        description="(ours) Micro-batches of examples of similar length, in random order: "
        "less padding for batch_size > 1.",
    )
    max_length: int = Field(512, ge=16, le=32768, description="Tokens per prompt+response.")
    max_prompt_length: int = Field(
        256, ge=8, le=32768, description="Prompt tokens kept when truncating (from the left)."
    )
    lora_r: int = Field(16, ge=1, le=1024, description="For lora: adapter rank.")
    lora_alpha: int = Field(32, ge=1, le=4096, description="For lora: scaling α (α/r).")
    lora_dropout: float = Field(
        0.0, ge=0.0, lt=1.0, description="For lora: dropout (off in preference training too)."
    )
    disable_dropout: bool = Field(
        True,
        description="(ours, TRL's default) Dropout off in the policy during preference "
        "training (clo, dpo, the DPO phase of sft+dpo), so policy and reference agree at step 0.",
    )
    gradient_checkpointing: bool = Field(False, description="Recompute activations (saves memory).")
    memory_budget_mb: int | None = Field(
        None,
        ge=1,
        description="(ours) Training memory to fit in; when the estimate without gradient "
        "checkpointing exceeds it, checkpointing turns on for as few decoder layers as bring "
        "it under (transformers' every_n_layers; clo.activation_policy). None: the "
        "device's free memory; the estimate also applies when gradient_checkpointing is off.",
    )
    precision: PrecisionSetting = Field(
        "fp32",
        description="fp32, or bf16: bf16 frozen weights and autocast, fp32 master weights for "
        "the trained parameters, fp32 log-softmax and loss (clo.precision); auto: bf16 on CUDA "
        "and on CPUs with AMX / AVX512-BF16, else fp32. Jobs default to auto (clo.spec).",
    )
    pack_prompts: bool = Field(
        True,
        description="(ours) Forward each prompt once, with both its responses in one row "
        "(4-D mask, restarted positions; clo.packing); models whose attention takes no custom "
        "mask are scored unpacked.",
    )
    # 256 tokens x 151,936 vocab x 4 B = 156 MB of fp32 logits per chunk (see clo.logprobs)
    logprob_chunk_tokens: int = Field(
        256, ge=16, description="Response tokens per chunk through the LM head."
    )
    checkpoint_every: int = Field(50, ge=1, description="Optimizer steps between checkpoints.")
    export_dtype: ExportDtype = Field(
        "model",
        description="dtype of exported weights; model: the dtype the base model ships in "
        "(its config.json), whatever dtype training ran in.",
    )
    seed: int = Field(0, ge=0, description="Seeds data order, init and dropout.")

    @model_validator(mode="before")
    @classmethod
    def _drop_retired(cls, data: Any) -> Any:
        if isinstance(data, dict) and any(k in data for k in RETIRED_FIELDS):
            return {k: v for k, v in data.items() if k not in RETIRED_FIELDS}
        return data

    @model_validator(mode="after")
    def _prompt_fits(self) -> "TrainConfig":
        if self.max_prompt_length >= self.max_length:
            raise ValueError("max_prompt_length must be smaller than max_length")
        return self
