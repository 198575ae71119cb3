"""Phase 1: multi-concept finetuning of the spatial and temporal LoRAs.

Stage 1 (reference video, prompt t_R), each step:

* **temporal loss** — noise-prediction MSE on all frames of the reference latents. With
  probability ``spatial_mask_probability`` the spatial LoRA is switched off for this pass
  (MotionDirector's random masking), so the temporal LoRA cannot lean on appearance. With
  ``temporal_debias`` MotionDirector's appearance-debiased term is added:
  ``MSE(√2·ε̂_f − ε̂_a, √2·ε_f − ε_a)`` with a random anchor frame ``a``;
* **spatial loss** — noise-prediction MSE on one random frame, run with every temporal module of
  the denoiser bypassed (``Backbone.temporal_bypass``). We bypass rather than let the temporal
  modules run on a one-frame clip because (a) the temporal LoRA then gets no gradient from the
  spatial loss by construction, not by bookkeeping, (b) it is what MotionDirector does, and
  (c) stage 2 trains on a single image, where the temporal modules have nothing to attend to.
  A video transformer (Wan) has no temporal modules: its "bypass" sets the temporal LoRA's
  scale to 0, and since its VAE compresses time the frame is encoded alone as an image
  (``reference_frame_latents``); the noise, the timestep and the target of every loss are the
  backbone's (:meth:`cammimic.components.Backbone.noise_and_target`: DDPM ε/v, or flow matching);
* ``L1 = L_temporal + δ · L_spatial`` (δ = ``spatial_weight``), routed as in MotionDirector:
  the **temporal LoRA** is updated from ``L_temporal`` alone and the **spatial LoRA** from
  ``δ · L_spatial`` alone (two Adam optimisers, or AdamW with ``optimizer = "adamw"``, each fed
  its own loss through ``backward(inputs=...)``, each group clipped on its own). The spatial LoRA
  still takes part in the all-frame forward pass (unless masked), but L_temporal's gradient never
  reaches it: the paper trains the spatial LoRA "on a single, randomly selected frame". With
  ``skip_spatial_when_masked`` a masked step has no spatial loss and no spatial update at all
  (MotionDirector's training loop).

Stage 2 (user image as a one-frame clip, prompt t_u): the same spatial LoRA continues with
``L2 = L_spatial + λ · L_ortho`` (λ = ``orthogonality_weight``, definition in
:func:`orthogonality_loss`); the temporal LoRA is frozen and does not change by a
bit (checked at the end of the stage). The orthogonality value is logged every step, also when it
is switched off (the "no ORTHO" ablation), and in stage 2 so is ``ortho_ratio`` =
‖∇(λ·L_ortho)‖ / ‖∇L_spatial‖ over the spatial LoRA: how much the term steers the update.

Mixed precision: the frozen denoiser may be float16 or bfloat16; the LoRAs stay float32, the
forward passes run under ``torch.autocast`` in the denoiser's dtype, and float16 scales the
losses with ``torch.amp.GradScaler`` (gradients unscaled before clipping) so small gradients do
not flush to zero. bfloat16 has float32's range and needs no scaler.

Failure is loud: a non-finite loss or gradient stops the run at that step with one line naming
the stage, the step and the loss or LoRA (:class:`TrainingDiverged`); nothing is written for
that step and the last checkpoint is kept.

Randomness (timesteps, noise, the spatial frame, masking, the debias anchor) comes from one CPU
``torch.Generator`` seeded with the run's seed; LoRA dropout draws from torch's global RNG.
Checkpoints are written only at step boundaries: both LoRAs, both optimisers, the gradient
scaler, every RNG state and the losses, as one safetensors file (tensors) with JSON metadata
(no pickle), so a resumed run continues exactly where the interrupted one stopped.

Reading order: :func:`finetune` sets up the random state and hands over to ``_train``, where
stage 1 and stage 2 are two loops of a few lines each. Beside them: ``_Losses`` (what one step of
each stage computes), ``_Loop`` (what every step does after its losses: clip, step the optimisers,
log) and ``_Checkpoints`` (checkpointing, ``--resume`` and Ctrl-C, in one place).
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import math
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterable
from contextlib import nullcontext
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs

from cammimic.backbones import as_backbone
from cammimic.config import FinetuneSection
from cammimic.errors import CammimicError

if TYPE_CHECKING:  # pragma: no cover
    import torch

__all__ = [
    "FinetuneSettings",
    "FinetuneResult",
    "TrainingInterrupted",
    "TrainingDiverged",
    "finetune",
    "CHECKPOINT_NAME",
    "CHECKPOINT_MARKER",
    "LOSS_FIELDS",
    "mixed_precision",
    "prepare_checkpoint_dir",
    "orthogonality_loss",
    "ORTHOGONALITY_DEFINITIONS",
]

CHECKPOINT_NAME = "checkpoint.safetensors"
#: Written into a checkpoint folder cammimic created, so only such a folder is removed after a run.
CHECKPOINT_MARKER = ".cammimic-checkpoints"
CHECKPOINT_FORMAT = "cammimic-checkpoint/2"
LOSS_FIELDS = (
    "stage",
    "step",
    "loss",
    "temporal",
    "spatial",
    "ortho",
    "ortho_ratio",
    "spatial_masked",
    "frame",
    "timestep",
)
#: Choices of :func:`orthogonality_loss`'s ``definition``.
ORTHOGONALITY_DEFINITIONS = ("cosine", "inner", "subspace")
_ORTHO_EPS = 1e-12


# --------------------------------------------------------------------------------------------
# The orthogonality loss of stage 2 (L2 = L_spatial + λ·L_ortho)
# --------------------------------------------------------------------------------------------


def _lora_factors(layer, adapter: str, detach: bool):
    """``(A, B, s)`` of one layer's LoRA in float32."""
    a = layer.lora_A[adapter].weight.float()
    b = layer.lora_B[adapter].weight.float()
    if detach:
        a, b = a.detach(), b.detach()
    return a, b, float(layer.scaling[adapter])


def orthogonality_loss(
    unet,
    pairs: Iterable[tuple[str, str]],
    *,
    definition: str = "cosine",
    detach_temporal: bool = True,
) -> torch.Tensor:
    """How far each spatial LoRA is from orthogonal to its paired temporal LoRA (0-d, float32).

    ``pairs`` are ``(spatial layer, temporal layer)`` names (:attr:`AttentionLayers.pairs`).
    ``definition`` is one of :data:`ORTHOGONALITY_DEFINITIONS`; ``detach_temporal`` stops
    gradients into the temporal LoRA (stage 2 trains only the spatial LoRA). Everything is
    computed in float32 whatever the parameter dtype.

    The paper writes ``L_ortho = ⟨W_spatial_LoRA, W_temporal_LoRA⟩``. Literally that does not
    type-check (there are more temporal than spatial layers, of several sizes); what does is to
    pair each spatial self-attention projection with the temporal-attention projection of the
    same block and role (all C×C) and compare their ``ΔW``. The Frobenius inner product
    ``⟨ΔW_s, ΔW_t⟩ = s_s·s_t·tr((B_sᵀB_t)(A_tA_sᵀ))`` and the norms ``‖ΔW‖² = s²·tr((BᵀB)(AAᵀ))``
    need only r×r products, never a C×C matrix. Definitions:

    ``"cosine"`` (default)
        mean over pairs of ``cos² = ⟨ΔW_s,ΔW_t⟩² / (‖ΔW_s‖²‖ΔW_t‖² + eps)``. Scale-free and in
        [0, 1], so the same λ means the same thing at every rank, layer width, LoRA scale and
        training length; it only asks the spatial update to point away from the temporal one,
        not to shrink. It is 0 with zero gradient while a ``B`` is zero (peft starts ``B`` at
        zero); in CamMimic stage 2 starts after stage 1 trained both ``B``, so that does not bite.
    ``"inner"``
        mean over pairs of ``⟨ΔW_s,ΔW_t⟩²``: the paper's expression, squared so it is a penalty.
        Grows with the fourth power of the LoRA magnitudes, so λ has to be tuned per setting, and
        it can also be lowered by shrinking ``ΔW_s``.
    ``"subspace"``
        mean over pairs of ``‖A_sA_tᵀ‖² + ‖B_sᵀB_t‖²``: the row and column spaces of the two LoRAs
        orthogonal. Stronger than orthogonal ``ΔW`` and non-zero from step 0, but not scale-free.
    """
    import torch

    from cammimic.lora.glue import lora_layers

    if definition not in ORTHOGONALITY_DEFINITIONS:
        raise CammimicError(
            f"orthogonality definition {definition!r} is unknown. "
            f"Try one of {list(ORTHOGONALITY_DEFINITIONS)}"
        )
    pairs = [tuple(p) for p in pairs]
    if not pairs:
        raise CammimicError(
            "the orthogonality loss got no (spatial, temporal) layer pairs; the backbone's "
            "locator must pair them, or set the orthogonality weight to 0"
        )
    spatial = lora_layers(unet, "spatial")
    temporal = lora_layers(unet, "temporal")
    terms = []
    for s_name, t_name in pairs:
        if s_name not in spatial or t_name not in temporal:
            which = (
                f"{s_name!r} has no spatial"
                if s_name not in spatial
                else f"{t_name!r} has no temporal"
            )
            raise CammimicError(f"orthogonality pair ({s_name!r}, {t_name!r}): {which} LoRA")
        a_s, b_s, s_s = _lora_factors(spatial[s_name], "spatial", detach=False)
        a_t, b_t, s_t = _lora_factors(temporal[t_name], "temporal", detach=detach_temporal)
        if a_s.shape[1] != a_t.shape[1] or b_s.shape[0] != b_t.shape[0]:
            raise CammimicError(
                f"orthogonality pair ({s_name!r}, {t_name!r}) pairs layers of different sizes "
                f"({a_s.shape[1]}->{b_s.shape[0]} vs {a_t.shape[1]}->{b_t.shape[0]}); "
                f"check the backbone's locator"
            )
        q = a_s @ a_t.T  # (r_s, r_t) = A_s A_tᵀ
        g = b_s.T @ b_t  # (r_s, r_t) = B_sᵀ B_t
        if definition == "subspace":
            terms.append(q.square().sum() + g.square().sum())
            continue
        # ⟨B_sA_s, B_tA_t⟩ = tr(A_sᵀB_sᵀB_tA_t) = tr(G Qᵀ) = Σ G∘Q
        inner = (s_s * s_t) * (g * q).sum()
        if definition == "inner":
            terms.append(inner.square())
            continue
        norm_s = (s_s * s_s) * ((b_s.T @ b_s) * (a_s @ a_s.T)).sum()
        norm_t = (s_t * s_t) * ((b_t.T @ b_t) * (a_t @ a_t.T)).sum()
        terms.append(inner.square() / (norm_s * norm_t + _ORTHO_EPS))
    return torch.stack(terms).mean()


#: The defaults of [finetune] (the config schema, cammimic.config.FinetuneSection).
_FINETUNE = FinetuneSection()


@attrs.frozen
class FinetuneSettings:
    """Phase 1 settings; the defaults are the config's [finetune] defaults, the paper's where it
    gives one (150 steps per stage, Adam, lr 5e-4)."""

    stage1_steps: int = _FINETUNE.stage1_steps
    stage2_steps: int = _FINETUNE.stage2_steps
    learning_rate: float = _FINETUNE.learning_rate
    optimizer: str = _FINETUNE.optimizer  #: "adam" (the paper) or "adamw" (MotionDirector)
    weight_decay: float = _FINETUNE.weight_decay  #: AdamW's decoupled decay, or Adam's L2 term
    spatial_weight: float = (
        _FINETUNE.spatial_weight
    )  #: δ in L1 = L_temporal + δ L_spatial (the paper: δ in (0, 1))
    spatial_mask_probability: float = (
        _FINETUNE.spatial_mask_probability
    )  #: P(spatial LoRA off for the all-frame pass)
    temporal_debias: bool = (
        _FINETUNE.temporal_debias
    )  #: add MotionDirector's appearance-debiased temporal loss
    #: a masked step skips the spatial loss and update too (MotionDirector)
    skip_spatial_when_masked: bool = _FINETUNE.skip_spatial_when_masked
    stage2: bool = _FINETUNE.stage2  #: False = the "no USC" ablation
    orthogonality: bool = _FINETUNE.orthogonality  #: False = the "no ORTHO" ablation
    #: λ; with ``subspace`` ‖∇(λ·L_ortho)‖/‖∇L_spatial‖ ≈ 0.2–0.4 at zeroscope's widths
    #: (benchmarks/orthogonality.py, docs/method.md)
    orthogonality_weight: float = _FINETUNE.orthogonality_weight
    orthogonality_definition: str = _FINETUNE.orthogonality_definition
    max_grad_norm: float = _FINETUNE.max_grad_norm  #: per LoRA group; 0 = no clipping
    checkpoint_every: int = (
        _FINETUNE.checkpoint_every
    )  #: 0 = only at the end of a stage and when interrupted
    gradient_checkpointing: bool = _FINETUNE.gradient_checkpointing
    seed: int = 0

    @classmethod
    def from_config(cls, config) -> FinetuneSettings:
        # a resolved config.toml (a run's, or the one eval hands each run) names every key: warn only
        # when δ was set to something other than its default
        is_explicit = getattr(config, "is_explicit", None)
        if (
            is_explicit is not None
            and is_explicit("finetune.spatial_weight")
            and config["finetune"]["spatial_weight"] != _FINETUNE.spatial_weight
        ):
            import warnings

            warnings.warn(SPATIAL_WEIGHT_DEPRECATED, DeprecationWarning, stacklevel=2)
        return cls(**config["finetune"], seed=config["run"]["seed"])


#: δ only scales the spatial LoRA's own gradient, which its own Adam normalises away (issue 22 §6).
SPATIAL_WEIGHT_DEPRECATED = (
    "[finetune] spatial_weight (δ) is deprecated and has no effect: stage 1 feeds δ·L_spatial to the spatial "
    "LoRA's own Adam, which is invariant to a constant gradient scale (only clipping could see it); remove it "
    "(docs/method.md#δ-spatial_weight)"
)


@attrs.frozen(eq=False)
class FinetuneResult:
    losses: list[dict[str, Any]]
    resumed_from: dict[str, int] | None  #: ``{"stage": s, "step": n}`` when resumed
    seconds: float
    #: True when stage 2 ran and the temporal LoRA was verified bit-identical before and after it.
    temporal_unchanged_in_stage2: bool | None
    #: ``"float32"``, or ``"float16 autocast + GradScaler"`` / ``"bfloat16 autocast"``.
    precision: str = "float32"
    #: float16 steps the gradient scaler skipped (a gradient overflowed at the current scale).
    skipped_steps: int = 0
    #: mean seconds per step of each stage run in this call
    seconds_per_step: dict[str, float] = attrs.field(factory=dict)


class TrainingInterrupted(CammimicError):
    """Training stopped early (Ctrl-C); a checkpoint holds the last completed step."""

    exit_code = 130


class TrainingDiverged(CammimicError):
    """A loss or gradient became NaN or infinite; training stopped at that step."""


@attrs.frozen
class _Precision:
    dtype: Any
    autocast: bool
    scaler: bool

    @property
    def label(self) -> str:
        name = str(self.dtype).replace("torch.", "")
        if not self.autocast:
            return name
        return f"{name} autocast" + (" + GradScaler" if self.scaler else "")


def mixed_precision(dtype) -> _Precision:
    """How Phase 1 trains with a denoiser in ``dtype``: autocast for half types, a scaler for float16."""
    import torch

    if dtype == torch.float16:
        return _Precision(dtype, autocast=True, scaler=True)
    if dtype == torch.bfloat16:
        return _Precision(dtype, autocast=True, scaler=False)
    return _Precision(dtype, autocast=False, scaler=False)


def _timestep_value(t):
    """A loss record's timestep: an integer (DDPM), or a float rounded to 0.01 (flow matching)."""
    value = t.item()
    return int(value) if float(value).is_integer() else round(float(value), 2)


def _tensor_digest(t) -> str:
    import torch

    t = t.detach().to("cpu").contiguous()
    h = hashlib.sha256(str((str(t.dtype), tuple(t.shape))).encode())
    h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()[:16]


def _state_digest(state: dict) -> str:
    h = hashlib.sha256()
    for k in sorted(state):
        h.update(k.encode() + _tensor_digest(state[k]).encode())
    return h.hexdigest()[:16]


def _bitwise_equal(a, b) -> bool:
    """Equal bit for bit (unlike ``torch.equal``, NaN equals the same NaN)."""
    import torch

    if a.shape != b.shape or a.dtype != b.dtype:
        return False
    return torch.equal(a.contiguous().view(torch.uint8), b.contiguous().view(torch.uint8))


def _resume_key(
    settings, unet, layers, backbone, tensors: dict[str, Any], initial_loras: dict
) -> dict[str, Any]:
    """Everything that shapes the result, as readable values or digests (compared item by item)."""
    key: dict[str, Any] = {
        f"finetune.{k}": v
        for k, v in attrs.asdict(settings).items()
        if k not in ("checkpoint_every", "seed")
    }
    key["run.seed"] = settings.seed
    for adapter in ("spatial", "temporal"):
        cfg = (getattr(unet, "peft_config", None) or {}).get(adapter)
        if cfg is not None:
            key[f"{adapter} LoRA rank"] = int(cfg.r)
            key[f"{adapter} LoRA alpha"] = float(cfg.lora_alpha)
            key[f"{adapter} LoRA dropout"] = float(cfg.lora_dropout)
    key["LoRA layers"] = hashlib.sha256(
        json.dumps(layers.to_json(), sort_keys=True).encode()
    ).hexdigest()[:16]
    key["initial LoRA weights"] = hashlib.sha256(
        "".join(_state_digest(initial_loras[a]) for a in sorted(initial_loras)).encode()
    ).hexdigest()[:16]
    key["dtype"] = str(backbone.dtype).replace("torch.", "")
    key["device"] = str(getattr(backbone.device, "type", backbone.device))
    fingerprint = getattr(backbone, "fingerprint", None)
    key["denoiser"] = fingerprint() if callable(fingerprint) else type(unet).__name__
    key["base model"] = str(getattr(backbone, "weights", ""))
    for name, tensor in tensors.items():
        key[name] = None if tensor is None else _tensor_digest(tensor)
    return key


def _key_difference(saved: dict, now: dict) -> str | None:
    diffs = []
    for name in list(now) + [k for k in saved if k not in now]:
        a, b = saved.get(name, "<absent>"), now.get(name, "<absent>")
        if a != b:
            readable = not (isinstance(a, str) and isinstance(b, str) and len(a) == len(b) == 16)
            diffs.append(f"{name} ({a!r} then, {b!r} now)" if readable else name)
    return ", ".join(diffs) if diffs else None


class _DeferInterrupt:
    """Hold a Ctrl-C (SIGINT) that arrives inside the block until the block has finished.

    The optimiser steps, the scaler update and the step count form one commit: an interrupt
    lands before it (the step is redone on resume) or after it, never in between.
    """

    def __enter__(self):
        self.pending = False
        self.old = None
        if threading.current_thread() is threading.main_thread():
            try:
                self.old = signal.signal(signal.SIGINT, self._hold)
            except (ValueError, OSError):  # pragma: no cover - no signals here
                self.old = None
        return self

    def _hold(self, signum, frame):
        self.pending = True

    def __exit__(self, *exc):
        if self.old is not None:
            signal.signal(signal.SIGINT, self.old)
        if self.pending and exc[0] is None:
            raise KeyboardInterrupt
        return False


def finetune(
    backbone,
    layers,
    *,
    reference_latents,
    reference_embeds,
    image_latents=None,
    image_embeds=None,
    reference_frame_latents=None,
    settings: FinetuneSettings = FinetuneSettings(),
    checkpoint_dir: str | Path | None = None,
    resume: bool = False,
    progress: bool = True,
    on_step: Callable[[dict[str, Any]], None] | None = None,
) -> FinetuneResult:
    """Train the spatial and temporal LoRAs already injected into the backbone's denoiser.

    Args:
        layers: the :class:`~cammimic.components.AttentionLayers` the LoRAs sit on (``pairs``
            feed the orthogonality loss).
        reference_latents: ``(1, C, T, h, w)`` latents of the reference video (cached: encoded once).
        reference_embeds: ``(1, L, D)`` embeddings of the reference prompt t_R.
        image_latents, image_embeds: the user image as a one-frame clip ``(1, C, 1, h, w)`` and
            the embeddings of t_u; needed when stage 2 runs.
        reference_frame_latents: each reference frame alone as an image, ``(T, C, 1, h, w)``:
            the spatial LoRA's single-frame inputs when the VAE compresses time (Wan:
            :meth:`encode_frames`); ``None`` = slices of ``reference_latents`` (a per-frame VAE).
        checkpoint_dir: where ``checkpoint.safetensors`` is written every ``checkpoint_every``
            steps, at the end of each stage and on Ctrl-C; with ``resume=True`` training
            continues from the one there.
        on_step: called with each step's loss record (after the optimiser step).

    Returns:
        The per-step losses (see ``LOSS_FIELDS``) and whether training was resumed.

    Raises:
        TrainingInterrupted: on Ctrl-C, after saving the state after the last completed step.
        TrainingDiverged: a loss or gradient became NaN or infinite.
    """
    import torch

    from cammimic.lora import lora_state_dict

    s = settings
    if s.stage2 and s.stage2_steps and (image_latents is None or image_embeds is None):
        raise CammimicError("stage 2 needs the user image's latents and prompt embeddings")
    backbone = as_backbone(backbone)
    unet = backbone.denoiser
    device = backbone.device
    precision = mixed_precision(backbone.dtype)
    initial = {a: lora_state_dict(unet, a) for a in ("spatial", "temporal")}
    key = _resume_key(
        s,
        unet,
        layers,
        backbone,
        {
            "reference video latents": reference_latents,
            "reference prompt embeddings": reference_embeds,
            "user image latents": image_latents,
            "image prompt embeddings": image_embeds,
            **(
                {"reference frame latents": reference_frame_latents}
                if reference_frame_latents is not None
                else {}
            ),
        },
        initial,
    )

    # LoRA dropout draws from torch's global RNG: seed it too, inside a fork so the caller's
    # random state is left as it was.
    with torch.random.fork_rng(
        devices=[device] if device.type == "cuda" else [], device_type=device.type
    ):
        torch.manual_seed(int(s.seed) % 2**63)
        # every other random number (timesteps, noise, the spatial frame, masking) comes from one
        # generator; temporal_debias's anchor frames from their own, so the option moves no other draw
        generator = torch.Generator("cpu").manual_seed(int(s.seed) % 2**63)
        anchors = torch.Generator("cpu").manual_seed((int(s.seed) + 1) % 2**63)
        scaler = torch.amp.GradScaler(device.type) if precision.scaler else None
        checkpoints = _Checkpoints(checkpoint_dir, key, unet, scaler, generator, anchors)
        start = checkpoints.resume() if resume else _Start()
        losses = _Losses.build(
            backbone,
            layers,
            s,
            precision,
            scaler,
            generator,
            anchors,
            reference_latents=reference_latents,
            reference_embeds=reference_embeds,
            image_latents=image_latents,
            image_embeds=image_embeds,
            reference_frame_latents=reference_frame_latents,
        )
        loop = _Loop(unet, s, scaler, checkpoints, progress, on_step)
        return _train(backbone, s, precision, losses, loop, checkpoints, start)


def _train(
    backbone,
    s: FinetuneSettings,
    precision: _Precision,
    losses: _Losses,
    loop: _Loop,
    checkpoints: _Checkpoints,
    start: _Start,
) -> FinetuneResult:
    """Phase 1's two stages, each a loop of steps; a resumed run starts at ``start``."""
    from cammimic.lora import lora_state_dict

    unet = backbone.denoiser
    started = time.perf_counter()
    temporal_unchanged = None
    checkpoints.mark(start.stage, start.step, {})
    with _training_mode(backbone, unet, s), checkpoints.on_stop(s, precision):
        # Stage 1, the reference video: L_temporal on all frames trains the temporal LoRA (the
        # motion), δ·L_spatial on one random frame the spatial LoRA (the appearance).
        if start.todo(1, s.stage1_steps):
            params, opts = loop.start_stage(1, start, temporal=True)
            for step in loop.steps(1, start.first(1), s.stage1_steps):
                record = losses.stage1((1, step + 1), params["spatial"], params["temporal"])
                loop.update(opts, params, (1, step + 1), record)
            checkpoints.end_of_stage(1, s.stage1_steps)

        # Stage 2, the user image: L_spatial + λ·L_ortho trains the spatial LoRA alone; the
        # temporal LoRA is frozen, and checked to be bit for bit the same afterwards.
        if s.stage2 and s.stage2_steps and start.todo(2, s.stage2_steps):
            params, opts = loop.start_stage(2, start, temporal=False)
            before = lora_state_dict(unet, "temporal")
            for step in loop.steps(2, start.first(2), s.stage2_steps):
                record = losses.stage2((2, step + 1), params["spatial"])
                loop.update(opts, params, (2, step + 1), record)
            after = lora_state_dict(unet, "temporal")
            temporal_unchanged = all(_bitwise_equal(before[k], after[k]) for k in before)
            if not temporal_unchanged:  # pragma: no cover - a bug, not a user error
                raise RuntimeError("the temporal LoRA changed during stage 2; it must stay frozen")
            checkpoints.end_of_stage(2, s.stage2_steps)
    return FinetuneResult(
        losses=checkpoints.losses,
        resumed_from=start.resumed_from,
        seconds=time.perf_counter() - started,
        temporal_unchanged_in_stage2=temporal_unchanged,
        precision=precision.label,
        skipped_steps=loop.skipped,
        seconds_per_step=loop.per_step,
    )


@contextlib.contextmanager
def _training_mode(backbone, unet, s: FinetuneSettings):
    """LoRA dropout and gradient checkpointing on while finetuning, and only then."""
    from cammimic.lora import set_trainable

    backbone.set_gradient_checkpointing(s.gradient_checkpointing)
    unet.train()
    try:
        yield
    finally:
        backbone.set_gradient_checkpointing(False)
        set_trainable(unet, spatial=False, temporal=False)
        unet.eval()


@attrs.define
class _Losses:
    """What one step of each stage computes: the noised inputs, the forward passes, the losses
    and their gradients (each LoRA group fed its own loss through ``backward(inputs=...)``)."""

    backbone: Any
    unet: Any
    layers: Any
    s: FinetuneSettings
    precision: _Precision
    scaler: Any  #: torch.amp.GradScaler for float16, else None
    generator: Any
    anchors: Any
    ref: Any  #: (1, C, T, h, w) float32 reference latents on the device
    reference_embeds: Any
    img: Any  #: (1, C, 1, h, w) float32 user-image latents, or None
    image_embeds: Any
    frames: Any  #: (T, C, 1, h, w) float32 per-frame latents (a VAE that compresses time), or None

    @classmethod
    def build(
        cls,
        backbone,
        layers,
        s,
        precision,
        scaler,
        generator,
        anchors,
        *,
        reference_latents,
        reference_embeds,
        image_latents,
        image_embeds,
        reference_frame_latents,
    ) -> _Losses:
        import torch

        device = backbone.device

        def on_device(t):
            return t.to(device=device, dtype=torch.float32) if t is not None else None

        return cls(
            backbone,
            backbone.denoiser,
            layers,
            s,
            precision,
            scaler,
            generator,
            anchors,
            on_device(reference_latents),
            reference_embeds,
            on_device(image_latents),
            image_embeds,
            on_device(reference_frame_latents),
        )

    @property
    def num_frames(self) -> int:
        return self.frames.shape[0] if self.frames is not None else self.ref.shape[2]

    def _noisy(self, latents):
        import torch

        device = self.backbone.device
        # timestep first, then noise: the order every checkpoint and pinned value assumes
        t = self.backbone.sample_training_timesteps(1, self.generator)
        noise = torch.randn(latents.shape, generator=self.generator).to(device)
        t_dev = t.to(device)
        return (*self.backbone.noise_and_target(latents, noise, t_dev), t_dev)

    def _predict(self, latents, embeds, t):
        import torch

        autocast = (
            torch.autocast(device_type=self.backbone.device.type, dtype=self.precision.dtype)
            if self.precision.autocast
            else nullcontext()
        )
        with autocast:
            return self.backbone.predict_noise(latents.to(self.backbone.dtype), t, embeds).float()

    def _scaled(self, loss):
        return self.scaler.scale(loss) if self.scaler is not None else loss

    def stage1(self, where: tuple[int, int], spatial_params, temporal_params) -> dict[str, Any]:
        """Stage 1's losses and gradients on the reference video; its loss record."""
        import torch

        from cammimic.lora import lora_scales

        s, mse, ref = self.s, torch.nn.functional.mse_loss, self.ref
        masked = bool(torch.rand((), generator=self.generator).item() < s.spatial_mask_probability)
        x, target, t = self._noisy(ref)
        frame = int(torch.randint(0, self.num_frames, (1,), generator=self.generator).item())
        xs, target_s, ts = self._noisy(
            self.frames[frame : frame + 1]
            if self.frames is not None
            else ref[:, :, frame : frame + 1]
        )
        # an image-to-video backbone: the first latent frame is the reference's own first frame, at
        # timestep 0 (Backbone.condition); the loss is on the frames it leaves to the model
        x, t_model = self.backbone.condition(x, t)
        k = int(self.backbone.conditioned_frames)
        target = target[:, :, k:]
        anchor = (
            int(torch.randint(0, ref.shape[2] - k, (1,), generator=self.anchors).item())
            if s.temporal_debias
            else 0
        )
        # backward inside the block: a recomputed (checkpointed) forward sees the same scales
        with lora_scales(self.unet, spatial=0.0) if masked else nullcontext():
            pred = self._predict(x, self.reference_embeds, t_model)[:, :, k:]
            loss_t = mse(pred, target.float())
            if s.temporal_debias:
                root2 = math.sqrt(2.0)
                loss_t = loss_t + mse(
                    root2 * pred - pred[:, :, anchor : anchor + 1],
                    root2 * target.float() - target[:, :, anchor : anchor + 1].float(),
                )
            _finite(loss_t.item(), "the temporal loss", where)
            torch.autograd.backward(self._scaled(loss_t), inputs=temporal_params)
        loss_s = None
        # MotionDirector skips the spatial loss (and the spatial optimiser's step) on a masked step;
        # the draws above are made either way, so the option moves no other random number
        if not (masked and s.skip_spatial_when_masked):
            with self.backbone.temporal_bypass():
                loss_s = mse(self._predict(xs, self.reference_embeds, ts), target_s.float())
                _finite(loss_s.item(), "the spatial loss", where)
                torch.autograd.backward(
                    self._scaled(s.spatial_weight * loss_s), inputs=spatial_params
                )
        with torch.no_grad():
            ortho = float(
                orthogonality_loss(
                    self.unet, self.layers.pairs, definition=s.orthogonality_definition
                )
            )
        spatial = None if loss_s is None else loss_s.item()
        return {
            "loss": loss_t.item() + (0.0 if spatial is None else s.spatial_weight * spatial),
            "temporal": loss_t.item(),
            "spatial": spatial,
            "ortho": ortho,
            "ortho_ratio": None,
            "spatial_masked": masked,
            "frame": frame,
            "timestep": _timestep_value(t),
        }

    def stage2(self, where: tuple[int, int], spatial_params) -> dict[str, Any]:
        """Stage 2's losses and the spatial LoRA's gradient on the user image; its loss record."""
        import torch

        s, scaler = self.s, self.scaler
        x, target, t = self._noisy(self.img)
        with self.backbone.temporal_bypass():
            loss_s = torch.nn.functional.mse_loss(
                self._predict(x, self.image_embeds, t), target.float()
            )
            _finite(loss_s.item(), "the spatial loss", where)
            torch.autograd.backward(self._scaled(loss_s), inputs=spatial_params)
        ortho = orthogonality_loss(
            self.unet,
            self.layers.pairs,
            definition=s.orthogonality_definition,
            detach_temporal=True,
        )
        _finite(ortho.item(), "the orthogonality loss", where)
        grads = torch.autograd.grad(
            s.orthogonality_weight * ortho, spatial_params, allow_unused=True
        )
        unscale = 1.0 / scaler.get_scale() if scaler is not None else 1.0
        g_spatial = _norm([p.grad for p in spatial_params]) * unscale
        g_ortho = _norm(grads)
        ratio = g_ortho / g_spatial if g_spatial > 0 else (0.0 if g_ortho == 0 else math.inf)
        if s.orthogonality:
            factor = scaler.get_scale() if scaler is not None else 1.0
            with torch.no_grad():
                for p, g in zip(spatial_params, grads, strict=True):
                    if g is not None:
                        p.grad.add_(g, alpha=factor)
        loss = loss_s.item() + (s.orthogonality_weight * ortho.item() if s.orthogonality else 0.0)
        return {
            "loss": loss,
            "temporal": None,
            "spatial": loss_s.item(),
            "ortho": ortho.item(),
            "ortho_ratio": ratio,
            "spatial_masked": False,
            "frame": 0,
            "timestep": _timestep_value(t),
        }


def _finite(value: float, what: str, where: tuple[int, int]) -> float:
    if not math.isfinite(value):
        raise _Diverged(what, value, where)
    return value


@attrs.define
class _Start:
    """Where training starts: stage 1 step 0, or where a checkpoint stopped."""

    stage: int = 1
    step: int = 0  #: steps of ``stage`` already done
    saved: dict[str, Any] | None = None  #: the checkpoint resumed from (its optimiser states)
    resumed_from: dict[str, int] | None = None

    def first(self, stage: int) -> int:
        """The first step of ``stage`` still to run."""
        return self.step if stage == self.stage else 0

    def todo(self, stage: int, total: int) -> bool:
        return stage >= self.stage and self.first(stage) < total


class _Loop:
    """What every step of both stages does after its losses: unscale, clip, step the optimisers
    (a Ctrl-C held until they are done), log the record, checkpoint, report progress."""

    def __init__(
        self, unet, s: FinetuneSettings, scaler, checkpoints: _Checkpoints, progress: bool, on_step
    ):
        self.unet, self.s, self.scaler, self.checkpoints = unet, s, scaler, checkpoints
        self.progress, self.on_step = progress, on_step
        self.bar = None
        self.skipped = 0  #: float16 steps the scaler skipped
        self.per_step: dict[str, float] = {}  #: mean seconds per step of each stage run

    def start_stage(self, stage: int, start: _Start, *, temporal: bool):
        """The parameter groups the stage trains and one optimiser each (restored when resuming
        within this stage)."""
        from cammimic.lora import lora_parameters, set_trainable

        set_trainable(self.unet, spatial=True, temporal=temporal)
        params = {"spatial": lora_parameters(self.unet, "spatial")}
        if temporal:
            params["temporal"] = lora_parameters(self.unet, "temporal")
        opts = {g: _optimizer(self.s, ps) for g, ps in params.items()}
        first = start.first(stage)
        if start.saved is not None and stage == start.stage and first > 0:
            _load_optimizers(opts, start.saved, self.checkpoints.path)
        self.checkpoints.mark(stage, first, opts)
        return params, opts

    def steps(self, stage: int, first: int, total: int):
        """Steps ``first`` .. ``total - 1`` of ``stage``, with a progress bar and their mean time."""
        self.bar = _bar(range(first, total), stage, total, first, self.progress)
        started, done = time.perf_counter(), 0
        for step in self.bar:
            yield step
            done += 1
        if done:
            self.per_step[f"stage{stage}"] = round((time.perf_counter() - started) / done, 4)

    def update(self, opts, params, where: tuple[int, int], record: dict[str, Any]) -> None:
        """Step the optimisers on the gradients the losses left, then log and checkpoint the step."""
        s, scaler = self.s, self.scaler
        if scaler is not None:
            for opt in opts.values():
                scaler.unscale_(opt)
        norms = {g: _clip(ps, s.max_grad_norm) for g, ps in params.items()}
        overflow = [g for g, n in norms.items() if not math.isfinite(n)]
        if overflow and scaler is None:
            raise _Diverged(f"the {overflow[0]} LoRA's gradient", norms[overflow[0]], where)
        # a group with no gradient this step (the spatial LoRA on a skipped masked step) is not
        # stepped: no weight decay, no moment update, as MotionDirector skips its optimiser
        stepping = [opt for g, opt in opts.items() if any(p.grad is not None for p in params[g])]
        stage, step = where
        with _DeferInterrupt():
            if scaler is not None:
                for opt in stepping:
                    scaler.step(opt)  # skipped when a gradient overflowed at this scale
                scaler.update()
                self.skipped += bool(overflow)
            else:
                for opt in stepping:
                    opt.step()
            for opt in opts.values():
                opt.zero_grad(set_to_none=True)
            record = {"stage": stage, "step": step, **record}
            self.checkpoints.losses.append(record)
            self.checkpoints.mark(stage, step, opts)
        if scaler is not None and scaler.get_scale() < 1.0:
            raise _Diverged(
                f"the {overflow[0] if overflow else 'spatial'} LoRA's gradient (even at loss "
                "scale < 1)",
                math.inf,
                where,
            )
        if hasattr(self.bar, "set_postfix"):
            self.bar.set_postfix(loss=f"{record['loss']:.4f}", ortho=f"{record['ortho']:.3g}")
        if s.checkpoint_every and step % s.checkpoint_every == 0:
            self.checkpoints.save()
        if self.on_step is not None:
            self.on_step(record)


class _Checkpoints:
    """Checkpointing and interruption, in one place.

    ``boundary`` is the state after the last completed step (LoRAs, optimisers, scaler, every
    RNG state, the losses). It is written every ``checkpoint_every`` steps, at the end of each
    stage and on Ctrl-C (:meth:`on_stop`), and read back by :meth:`resume`. Without a folder
    nothing is written and an interruption says so.
    """

    def __init__(self, folder, key: dict[str, Any], unet, scaler, generator, anchors):
        self.given = folder
        self.folder = Path(folder) if folder is not None else None
        self.path = self.folder / CHECKPOINT_NAME if self.folder is not None else None
        self.key, self.unet, self.scaler, self.generator, self.anchors = (
            key,
            unet,
            scaler,
            generator,
            anchors,
        )
        self.losses: list[dict[str, Any]] = []
        self.boundary: dict[str, Any] = {}
        self.last_saved: tuple[int, int] | None = None  #: (stage, step) of the checkpoint on disk

    def resume(self) -> _Start:
        """Restore the LoRAs, RNG states, scaler and losses of the checkpoint in the folder."""
        if self.path is None or not self.path.is_file():
            where = f" in {self.given}" if self.given is not None else ""
            raise CammimicError(
                f"--resume: no checkpoint{where}; run without --resume to start afresh"
            )
        saved = _load_checkpoint(self.path, self.key)
        _restore_loras(self.unet, saved, self.path)
        _set_rng_states(self.generator, self.anchors, saved["rng"])
        if self.scaler is not None and saved["scaler"]:
            self.scaler.load_state_dict(saved["scaler"])
        self.losses = list(saved["losses"])
        stage, done = saved["stage"], saved["step"]
        self.last_saved = (stage, done)
        print(f"resuming from stage {stage} step {done}", file=sys.stderr)
        return _Start(
            stage=stage, step=done, saved=saved, resumed_from={"stage": stage, "step": done}
        )

    def mark(self, stage: int, step: int, opts) -> None:
        """The state after ``step`` of ``stage`` (0: before its first step) is what a save writes."""
        self.boundary = {
            "stage": stage,
            "step": step,
            "rng": _rng_states(self.generator, self.anchors),
            "opts": opts,
        }

    def save(self) -> None:
        if self.path is None:
            return
        _save_checkpoint(
            self.path, self.key, self.boundary, self.unet, self.scaler, self.losses, self.last_saved
        )
        self.last_saved = (self.boundary["stage"], self.boundary["step"])

    def end_of_stage(self, stage: int, total: int) -> None:
        if self.last_saved != (stage, total):
            self.save()

    @contextlib.contextmanager
    def on_stop(self, s: FinetuneSettings, precision: _Precision):
        """Ctrl-C saves the last completed step and becomes :class:`TrainingInterrupted`; a
        non-finite loss or gradient becomes :class:`TrainingDiverged`, naming the checkpoint kept."""
        try:
            yield
        except KeyboardInterrupt:
            b = self.boundary
            if self.path is None:
                raise TrainingInterrupted(
                    f"interrupted at stage {b['stage']} step {b['step']}; no checkpoint directory, so nothing was kept"
                ) from None
            _save_checkpoint(
                self.path, self.key, b, self.unet, self.scaler, self.losses, self.last_saved
            )
            raise TrainingInterrupted(
                f"interrupted after stage {b['stage']} step {b['step']}; checkpoint saved in {self.folder}; "
                "run the same command with --resume to continue"
            ) from None
        except _Diverged as exc:
            kept = (
                f"the last checkpoint (stage {self.last_saved[0]} step {self.last_saved[1]}) is kept in "
                f"{self.folder}"
                if self.last_saved is not None and self.folder is not None
                else "no checkpoint was written"
            )
            raise TrainingDiverged(exc.message(s, precision, kept)) from None


class _Diverged(Exception):
    def __init__(self, what: str, value: float, where: tuple[int, int]):
        self.what, self.value, self.where = what, value, where

    def message(self, s: FinetuneSettings, precision: _Precision, kept: str) -> str:
        stage, step = self.where
        tries = [f"a lower learning rate (now {s.learning_rate:g})"]
        if precision.autocast:
            tries.append("--dtype float32")
        tries.append("base weights free of NaN/inf")
        return (
            f"finetuning stopped at stage {stage} step {step}: {self.what} is {self.value} (not finite); "
            f"nothing was written for this step and {kept}; try {', '.join(tries)}"
        )


def _optimizer(s: FinetuneSettings, params):
    """One LoRA group's optimiser: Adam (the paper) or AdamW (MotionDirector's ``get_optimizer``)."""
    import torch

    if s.optimizer not in ("adam", "adamw"):
        raise CammimicError(f"optimizer {s.optimizer!r} is unknown. Try one of ['adam', 'adamw']")
    cls = torch.optim.AdamW if s.optimizer == "adamw" else torch.optim.Adam
    return cls(params, lr=s.learning_rate, weight_decay=s.weight_decay)


def _norm(tensors) -> float:
    import torch

    ts = [t.detach().float() for t in tensors if t is not None]
    if not ts:
        return 0.0
    return float(torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(t) for t in ts])))


def _clip(params, max_norm: float) -> float:
    """Clip one group's gradient to ``max_norm`` (0: only measure); its norm before clipping."""
    import torch

    if max_norm:
        return float(torch.nn.utils.clip_grad_norm_(params, max_norm))
    return _norm([p.grad for p in params])


def _bar(steps, number, total, first, progress):
    from cammimic.progress import progress_bar

    return progress_bar(
        steps, desc=f"stage {number}", disable=not progress, total=total, initial=first
    )


# --- random states -------------------------------------------------------------------------


def _rng_states(generator, anchors) -> dict[str, Any]:
    import torch

    states = {
        "generator": generator.get_state(),
        "anchors": anchors.get_state(),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        for i, st in enumerate(torch.cuda.get_rng_state_all()):
            states[f"cuda{i}"] = st
    return states


def _set_rng_states(generator, anchors, states: dict[str, Any]) -> None:
    import torch

    generator.set_state(states["generator"])
    anchors.set_state(states["anchors"])
    torch.set_rng_state(states["torch"])
    cuda = [states[k] for k in sorted(k for k in states if k.startswith("cuda"))]
    if cuda and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(cuda[: torch.cuda.device_count()])


# --- checkpoints: safetensors + JSON, no pickle ----------------------------------------------


def _save_checkpoint(path: Path, key, boundary, unet, scaler, losses, last_saved) -> None:
    """Write the state after ``boundary``'s step atomically; on failure keep the previous one."""
    from safetensors.torch import save as save_tensors

    from cammimic.lora import lora_state_dict

    tensors: dict[str, Any] = {}
    for adapter in ("spatial", "temporal"):
        for k, v in lora_state_dict(unet, adapter).items():
            tensors[f"lora/{adapter}/{k}"] = v
    for k, v in boundary["rng"].items():
        tensors[f"rng/{k}"] = v.detach().cpu().contiguous().clone()
    optimizers = {}
    for group, opt in boundary["opts"].items():
        sd = opt.state_dict()
        scalars: dict[str, dict[str, Any]] = {}
        for idx, st in sd["state"].items():
            for name, value in st.items():
                if hasattr(value, "detach"):
                    tensors[f"opt/{group}/{idx}/{name}"] = value.detach().cpu().contiguous().clone()
                else:
                    scalars.setdefault(str(idx), {})[name] = value
        optimizers[group] = {
            "param_groups": sd["param_groups"],
            "scalars": scalars,
            "state_ids": [str(i) for i in sd["state"]],
        }
    meta = {
        "format": CHECKPOINT_FORMAT,
        "key": key,
        "stage": boundary["stage"],
        "step": boundary["step"],
        "losses": losses,
        "optimizers": optimizers,
        "scaler": scaler.state_dict() if scaler is not None else None,
    }
    data = save_tensors(tensors, metadata={"cammimic": json.dumps(meta, allow_nan=True)})
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        prepare_checkpoint_dir(path.parent)
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        reason = os.strerror(exc.errno) if exc.errno else str(exc)
        kept = (
            f"the previous checkpoint (stage {last_saved[0]} step {last_saved[1]}) is kept"
            if last_saved is not None and path.is_file()
            else "there is no earlier checkpoint"
        )
        fix = (
            "free some disk space"
            if exc.errno == errno.ENOSPC
            else "check that the folder is writable"
        )
        raise CammimicError(
            f"could not write the checkpoint {path} ({reason}); {kept}; {fix} and run again"
            f"{' with --resume' if last_saved is not None else ''}"
        ) from None


def prepare_checkpoint_dir(path: str | Path) -> bool:
    """Create the checkpoint folder with a marker file; False if it already existed (the user's)."""
    p = Path(path)
    if p.is_dir():
        return (p / CHECKPOINT_MARKER).is_file()
    p.mkdir(parents=True)
    (p / CHECKPOINT_MARKER).write_text(
        "made by cammimic; removed after a successful run\n", encoding="utf-8"
    )
    return True


def _load_checkpoint(path: Path, key) -> dict[str, Any]:
    """Read a checkpoint: safetensors tensors and JSON metadata only; nothing in it can run code."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            meta_text = (f.metadata() or {}).get("cammimic")
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as exc:  # noqa: BLE001 - a truncated, foreign or hostile file
        raise CammimicError(
            f"checkpoint {path} cannot be read as a cammimic checkpoint (safetensors: {type(exc).__name__}); "
            f"delete {path.parent} to start afresh"
        ) from None
    try:
        meta = json.loads(meta_text) if meta_text else None
        ok = isinstance(meta, dict) and meta.get("format") == CHECKPOINT_FORMAT
    except ValueError:
        ok = False
    if not ok:
        raise CammimicError(
            f"{path} is not a cammimic checkpoint ({CHECKPOINT_FORMAT}); delete {path.parent} "
            "to start afresh"
        )
    diff = _key_difference(meta.get("key") or {}, key)
    if diff:
        raise CammimicError(
            f"checkpoint {path} was made with other inputs or settings: {diff}; resume with the same ones, or "
            f"delete {path.parent} to start afresh"
        )
    state = dict(meta)
    state["lora"] = {
        a: {k.split("/", 2)[2]: v for k, v in tensors.items() if k.startswith(f"lora/{a}/")}
        for a in ("spatial", "temporal")
    }
    state["rng"] = {k.split("/", 1)[1]: v for k, v in tensors.items() if k.startswith("rng/")}
    state["tensors"] = tensors
    if not {"generator", "anchors", "torch"} <= set(state["rng"]):
        raise CammimicError(
            f"checkpoint {path} has no random state; delete {path.parent} to start afresh"
        )
    return state


def _load_optimizers(opts, state, path) -> None:
    saved = state["optimizers"]
    if set(saved) != set(opts):
        raise CammimicError(
            f"checkpoint {path} holds optimisers for {sorted(saved)}, not {sorted(opts)}; "
            f"delete {path.parent} to start afresh"
        )
    for group, opt in opts.items():
        info = saved[group]
        st: dict[int, dict[str, Any]] = {}
        for idx in info["state_ids"]:
            prefix = f"opt/{group}/{idx}/"
            entry = {
                k[len(prefix) :]: v for k, v in state["tensors"].items() if k.startswith(prefix)
            }
            entry.update(info["scalars"].get(idx, {}))
            st[int(idx)] = entry
        try:
            opt.load_state_dict({"state": st, "param_groups": info["param_groups"]})
        except (ValueError, KeyError, TypeError) as exc:
            raise CammimicError(
                f"checkpoint {path}: the {group} optimiser state does not fit ({exc}); "
                f"delete {path.parent} to start afresh"
            ) from None


def _restore_loras(unet, state, path) -> None:
    from cammimic.lora import set_lora_state_dict

    for adapter in ("spatial", "temporal"):
        set_lora_state_dict(unet, adapter, state["lora"][adapter], source=f"checkpoint {path}")
