"""Phase 1: multi-concept finetuning of the spatial and temporal LoRAs.

Stage 1 (reference video, prompt t_R), each step:

* **temporal loss** — noise-prediction MSE on all frames of the reference latents. With
  probability ``spatial_mask_probability`` the spatial LoRA is switched off for this pass
  (MotionDirector's random masking), so the temporal LoRA cannot lean on appearance;
* **spatial loss** — noise-prediction MSE on one random frame, run with every temporal module of
  the denoiser bypassed (``Backbone.temporal_bypass``). We bypass rather than let the temporal
  modules run on a one-frame clip because (a) the temporal LoRA then gets no gradient from the
  spatial loss by construction, not by bookkeeping, (b) it is what MotionDirector does, and
  (c) stage 2 trains on a single image, where the temporal modules have nothing to attend to;
* ``L1 = L_temporal + δ · L_spatial`` (δ = ``spatial_weight``). The spatial LoRA receives
  gradient from both terms (it is active in the all-frame pass unless masked); the temporal
  LoRA only from L_temporal.

Stage 2 (user image as a one-frame clip, prompt t_u): the same spatial LoRA continues with
``L2 = L_spatial + λ · L_ortho`` (λ = ``orthogonality_weight``, definition in
:func:`cammimic.lora.orthogonality_loss`); the temporal LoRA is frozen and does not change by a
bit (checked at the end of the stage). The orthogonality value is logged every step, also when it
is switched off (the "no ORTHO" ablation), so runs can be compared.

Randomness (timesteps, noise, the spatial frame, masking) comes from one CPU ``torch.Generator``
seeded with the run's seed; its state is saved in every checkpoint, so a resumed run continues
exactly where the interrupted one stopped.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Callable
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import attrs

from cammimic.errors import CammimicError

__all__ = ["FinetuneSettings", "FinetuneResult", "TrainingInterrupted", "finetune", "CHECKPOINT_NAME"]

CHECKPOINT_NAME = "checkpoint.pt"
LOSS_FIELDS = ("stage", "step", "loss", "temporal", "spatial", "ortho", "spatial_masked", "frame", "timestep", "seconds")


@attrs.frozen
class FinetuneSettings:
    """Phase 1 settings; the defaults are the paper's (150 steps per stage, Adam, lr 5e-4)."""

    stage1_steps: int = 150
    stage2_steps: int = 150
    learning_rate: float = 5e-4
    spatial_weight: float = 0.5  #: δ in L1 = L_temporal + δ L_spatial (the paper: δ in (0, 1))
    spatial_mask_probability: float = 0.2  #: P(spatial LoRA off for the all-frame pass)
    stage2: bool = True  #: False = the "no USC" ablation
    orthogonality: bool = True  #: False = the "no ORTHO" ablation
    orthogonality_weight: float = 0.1  #: λ
    orthogonality_definition: str = "cosine"
    max_grad_norm: float = 1.0  #: 0 = no clipping
    checkpoint_every: int = 50  #: 0 = only when interrupted
    gradient_checkpointing: bool = False
    seed: int = 0

    @classmethod
    def from_config(cls, config) -> FinetuneSettings:
        return cls(**config["finetune"], seed=config["run"]["seed"])


@attrs.frozen(eq=False)
class FinetuneResult:
    losses: list[dict[str, Any]]
    resumed_from: dict[str, int] | None  #: ``{"stage": s, "step": n}`` when resumed
    seconds: float
    #: True when stage 2 ran and the temporal LoRA was verified bit-identical before and after it.
    temporal_unchanged_in_stage2: bool | None


class TrainingInterrupted(CammimicError):
    """Training stopped early (Ctrl-C); a checkpoint holds the last completed step."""


def _prediction_target(sched, latents, noise, t):
    kind = sched.config.get("prediction_type", "epsilon")
    if kind == "epsilon":
        return noise
    if kind == "v_prediction":
        return sched.get_velocity(latents, noise, t)
    raise CammimicError(f"the backbone's scheduler predicts '{kind}'; cammimic trains epsilon or v_prediction models")


def _digest(*parts) -> str:
    h = hashlib.sha256()
    for p in parts:
        h.update(p if isinstance(p, bytes) else repr(p).encode())
    return h.hexdigest()[:16]


def finetune(
    backbone,
    layers,
    *,
    reference_latents,
    reference_embeds,
    image_latents=None,
    image_embeds=None,
    settings: FinetuneSettings = FinetuneSettings(),
    checkpoint_dir: str | Path | None = None,
    resume: bool = False,
    progress: bool = True,
    on_step: Callable[[dict[str, Any]], None] | None = None,
) -> FinetuneResult:
    """Train the spatial and temporal LoRAs already injected into ``backbone.unet``.

    Args:
        layers: the :class:`~cammimic.components.AttentionLayers` the LoRAs sit on (``pairs``
            feed the orthogonality loss).
        reference_latents: ``(1, C, T, h, w)`` latents of the reference video (cached: encoded once).
        reference_embeds: ``(1, L, D)`` embeddings of the reference prompt t_R.
        image_latents, image_embeds: the user image as a one-frame clip ``(1, C, 1, h, w)`` and
            the embeddings of t_u; needed when stage 2 runs.
        checkpoint_dir: where ``checkpoint.pt`` is written every ``checkpoint_every`` steps and
            on Ctrl-C; with ``resume=True`` training continues from the one there.
        on_step: called with each step's loss record (after the optimiser step).

    Returns:
        The per-step losses (see ``LOSS_FIELDS``) and whether training was resumed.
    """
    import torch

    from cammimic.lora import (
        lora_parameters,
        lora_scales,
        lora_state_dict,
        orthogonality_loss,
        set_trainable,
    )

    s = settings
    if s.stage2 and s.stage2_steps and (image_latents is None or image_embeds is None):
        raise CammimicError("stage 2 needs the user image's latents and prompt embeddings")
    unet = backbone.unet
    device = backbone.device
    sched = backbone.training_scheduler()
    num_train_timesteps = int(sched.config.num_train_timesteps)
    key = _digest(
        attrs.asdict(s, filter=lambda a, _: a.name != "checkpoint_every"),
        reference_latents.float().cpu().numpy().tobytes(),
        None if image_latents is None else image_latents.float().cpu().numpy().tobytes(),
        reference_embeds.float().cpu().numpy().tobytes(),
        layers.to_json(),
    )
    ckpt_path = Path(checkpoint_dir) / CHECKPOINT_NAME if checkpoint_dir is not None else None

    generator = torch.Generator("cpu").manual_seed(int(s.seed) % 2**63)
    losses: list[dict[str, Any]] = []
    stage, done = 1, 0  # the next stage to run and the steps of it already done
    resumed_from = None
    saved_opt = None
    if resume:
        if ckpt_path is None or not ckpt_path.is_file():
            where = f" in {checkpoint_dir}" if checkpoint_dir is not None else ""
            raise CammimicError(f"--resume: no checkpoint{where}; run without --resume to start afresh")
        state = _load_checkpoint(ckpt_path, key)
        _restore_loras(unet, state, ckpt_path)
        generator.set_state(state["generator"])
        torch.set_rng_state(state["torch_rng"])
        losses = list(state["losses"])
        stage, done, saved_opt = state["stage"], state["step"], state["optimizer"]
        resumed_from = {"stage": stage, "step": done}

    ref = reference_latents.to(device=device, dtype=torch.float32)
    img = image_latents.to(device=device, dtype=torch.float32) if image_latents is not None else None
    dtype = backbone.dtype

    def noisy(latents):
        t = torch.randint(0, num_train_timesteps, (1,), generator=generator)
        noise = torch.randn(latents.shape, generator=generator).to(device)
        t_dev = t.to(device)
        return sched.add_noise(latents, noise, t_dev), _prediction_target(sched, latents, noise, t_dev), t_dev

    def mse(latents, embeds, t, target):
        pred = backbone.predict_noise(latents.to(dtype), t, embeds)
        return torch.nn.functional.mse_loss(pred.float(), target.float())

    def step_stage1(params):
        masked = bool(torch.rand((), generator=generator).item() < s.spatial_mask_probability)
        x, target, t = noisy(ref)
        with lora_scales(unet, spatial=0.0) if masked else nullcontext():
            loss_t = mse(x, reference_embeds, t, target)
        loss_t.backward()
        frame = int(torch.randint(0, ref.shape[2], (1,), generator=generator).item())
        xs, target_s, ts = noisy(ref[:, :, frame : frame + 1])
        with backbone.temporal_bypass():
            loss_s = mse(xs, reference_embeds, ts, target_s)
        (s.spatial_weight * loss_s).backward()
        with torch.no_grad():
            ortho = orthogonality_loss(unet, layers.pairs, definition=s.orthogonality_definition)
        return {"loss": loss_t.item() + s.spatial_weight * loss_s.item(), "temporal": loss_t.item(),
                "spatial": loss_s.item(), "ortho": float(ortho), "spatial_masked": masked, "frame": frame,
                "timestep": int(t.item())}

    def step_stage2(params):
        x, target, t = noisy(img)
        with backbone.temporal_bypass():
            loss_s = mse(x, image_embeds, t, target)
        if s.orthogonality:
            ortho = orthogonality_loss(unet, layers.pairs, definition=s.orthogonality_definition,
                                       detach_temporal=True)
            loss = loss_s + s.orthogonality_weight * ortho
        else:
            with torch.no_grad():
                ortho = orthogonality_loss(unet, layers.pairs, definition=s.orthogonality_definition)
            loss = loss_s
        loss.backward()
        return {"loss": loss.item(), "temporal": None, "spatial": loss_s.item(), "ortho": ortho.item(),
                "spatial_masked": False, "frame": 0, "timestep": int(t.item())}

    stages = [(1, s.stage1_steps, step_stage1, True)]
    if s.stage2 and s.stage2_steps:
        stages.append((2, s.stage2_steps, step_stage2, False))

    started = time.perf_counter()
    temporal_unchanged = None
    backbone.set_gradient_checkpointing(s.gradient_checkpointing)
    try:
        for number, total, run_step, train_temporal in stages:
            if number < stage:
                continue
            first = done if number == stage else 0
            if first >= total:
                continue
            set_trainable(unet, spatial=True, temporal=train_temporal)
            params = lora_parameters(unet, "spatial") + (lora_parameters(unet, "temporal") if train_temporal else [])
            opt = torch.optim.Adam(params, lr=s.learning_rate)
            if saved_opt is not None and number == stage and first > 0:
                opt.load_state_dict(saved_opt)
            before = lora_state_dict(unet, "temporal") if number == 2 else None
            bar = _bar(range(first, total), number, total, first, progress)
            completed = first
            try:
                for step in bar:
                    t0 = time.perf_counter()
                    record = run_step(params)
                    if s.max_grad_norm:
                        torch.nn.utils.clip_grad_norm_(params, s.max_grad_norm)
                    opt.step()
                    opt.zero_grad(set_to_none=True)
                    completed = step + 1
                    record = {"stage": number, "step": completed, **record,
                              "seconds": round(time.perf_counter() - t0, 4)}
                    losses.append(record)
                    if hasattr(bar, "set_postfix"):
                        bar.set_postfix(loss=f"{record['loss']:.4f}", ortho=f"{record['ortho']:.3g}")
                    if ckpt_path is not None and s.checkpoint_every and completed % s.checkpoint_every == 0:
                        _save_checkpoint(ckpt_path, key, number, completed, unet, opt, generator, losses)
                    if on_step is not None:
                        on_step(record)
            except KeyboardInterrupt:
                if ckpt_path is None:
                    raise TrainingInterrupted(
                        f"interrupted at stage {number} step {completed} of {total}; no checkpoint directory, "
                        "so nothing was kept"
                    ) from None
                _save_checkpoint(ckpt_path, key, number, completed, unet, opt, generator, losses)
                raise TrainingInterrupted(
                    f"interrupted at stage {number} step {completed} of {total}; checkpoint saved in "
                    f"{ckpt_path.parent}; run the same command with --resume to continue"
                ) from None
            if before is not None:
                after = lora_state_dict(unet, "temporal")
                temporal_unchanged = all(torch.equal(before[k], after[k]) for k in before)
                if not temporal_unchanged:  # pragma: no cover - a bug, not a user error
                    raise RuntimeError("the temporal LoRA changed during stage 2; it must stay frozen")
            saved_opt = None
            if ckpt_path is not None:
                _save_checkpoint(ckpt_path, key, number, total, unet, opt, generator, losses)
    finally:
        backbone.set_gradient_checkpointing(False)
        set_trainable(unet, spatial=False, temporal=False)
    return FinetuneResult(losses=losses, resumed_from=resumed_from, seconds=time.perf_counter() - started,
                          temporal_unchanged_in_stage2=temporal_unchanged)


def _bar(steps, number, total, first, progress):
    from cammimic.progress import progress_bar

    return progress_bar(steps, desc=f"stage {number}", disable=not progress, total=total, initial=first)


def _save_checkpoint(path: Path, key, stage, step, unet, opt, generator, losses) -> None:
    import torch

    from cammimic.lora import lora_state_dict

    path.parent.mkdir(parents=True, exist_ok=True)
    state = {
        "format": "cammimic-checkpoint/1",
        "key": key,
        "stage": stage,
        "step": step,
        "spatial": lora_state_dict(unet, "spatial"),
        "temporal": lora_state_dict(unet, "temporal"),
        "optimizer": opt.state_dict(),
        "generator": generator.get_state(),
        "torch_rng": torch.get_rng_state(),
        "losses": losses,
    }
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    torch.save(state, tmp)
    os.replace(tmp, path)


def _load_checkpoint(path: Path, key):
    import torch

    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # noqa: BLE001 - a truncated or foreign file
        raise CammimicError(f"checkpoint {path} cannot be read ({type(exc).__name__}); delete it to start afresh") from exc
    if not isinstance(state, dict) or state.get("format") != "cammimic-checkpoint/1":
        raise CammimicError(f"{path} is not a cammimic checkpoint; delete it to start afresh")
    if state["key"] != key:
        raise CammimicError(
            f"checkpoint {path} was made with other inputs or settings; resume with the same inputs and "
            "settings, or delete it to start afresh"
        )
    return state


def _restore_loras(unet, state, path) -> None:
    from cammimic.lora import set_lora_state_dict

    for adapter in ("spatial", "temporal"):
        set_lora_state_dict(unet, adapter, state[adapter], source=f"checkpoint {path}")
