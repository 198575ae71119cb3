"""MotionClone guidance: the sample's temporal attention drawn to the reference's primary one.

Following MotionClone's code (github.com/LPengYang/MotionClone, ``motionclone/utils/
motionclone_functions.py``: ``obtain_motion_representation``, ``compute_temp_loss``,
``single_step_video``):

Once, before sampling (:meth:`MotionCloneGuidance.prepare`)::

    z_R   = VAE-encode(reference)                      (1, C, T, h, w)
    z_R,τ = √ᾱ_τ z_R + √(1 − ᾱ_τ) ε                   τ = reference_timestep (400), one fixed ε
    A_ref = temporal attention of ε_θ(z_R,τ, τ, "")    per layer (h·w·heads, T, T), empty prompt
    M     = top-k over the keys of A_ref, per query    (k = 1: each frame's strongest partner)

At a sampling step in the window (the first ``end`` of the schedule; MotionClone: t ≥ 700)::

    E     = Σ_layers mean_{M = 1} (A_gen − A_ref)²     = Σ_l ‖M ⊙ (A_ref − A_gen)‖² / |M|
    g     = ∇_{z_t} E                                   A_gen from ε_θ(z_t, t, t_I), by autograd
    x̂₀   ← x̂₀ − w · g / rms(g)

MotionClone adds ``λ √(1 − ᾱ_t) g`` to the noise prediction; cammimic's guidance terms act on the
predicted clean latents x̂₀ before the scheduler's step (``acts_on = "x0"``, as the homography and
camerascore terms do, so every sampler keeps the pull), and for an ε-prediction model a change of
ε by ``c·g`` is a change of x̂₀ by ``−(√(1 − ᾱ_t)/√ᾱ_t)·c·g``: the same direction, −g. The step is
normalised so ``weight`` is the RMS change of x̂₀, whatever E's scale (MotionClone's
``motion_guidance_weight`` 2000 is tuned to its own loss scale).

The attention probabilities are recorded by :class:`RecordingAttnProcessor` (diffusers'
``AttnProcessor`` with the probabilities kept) set on the ``attn1`` of the
``TransformerTemporalModel`` blocks the attention-layer locator names, only for the term's own
passes: the originals are put back after each, so the sampler's passes are untouched.
"""

from __future__ import annotations

import time

import numpy as np

from cammimic.errors import CammimicError

__all__ = [
    "MotionCloneGuidance",
    "RecordingAttnProcessor",
    "check_parameters",
    "primary_attention",
    "temporal_attention_layers",
    "topk_mask",
]


def check_parameters(weight, start, end, reference_timestep, top_k, blocks) -> tuple[str, ...]:
    """The block prefixes, after one line per bad parameter."""
    if not 0.0 <= float(weight) <= 10.0:
        raise CammimicError(
            f"motionclone guidance weight {weight} is outside [0, 10] (RMS change of x̂₀ per step)"
        )
    if not 0.0 <= float(start) <= float(end) <= 1.0:
        raise CammimicError(
            f"motionclone guidance needs 0 <= start <= end <= 1, got start={start}, end={end}"
        )
    if not 0 <= int(reference_timestep) <= 999:
        raise CammimicError(
            f"motionclone guidance reference_timestep {reference_timestep} is outside [0, 999] (training timesteps; "
            "MotionClone uses 400)"
        )
    if not 1 <= int(top_k):
        raise CammimicError(
            f"motionclone guidance top_k {top_k} must be 1 or more (the paper's k = 1)"
        )
    prefixes = tuple(p.strip().rstrip(".") for p in str(blocks).split(",") if p.strip())
    if not prefixes:
        raise CammimicError(
            'motionclone guidance blocks is empty; name UNet modules, e.g. blocks = "up_blocks.1"'
        )
    return prefixes


def topk_mask(probs, k: int):
    """The sparse mask M of attention probabilities ``(..., queries, keys)``: True at each query's
    ``k`` largest keys (ties broken by ``torch.topk``), exactly ``k`` per query."""
    import torch

    indices = probs.topk(min(k, probs.shape[-1]), dim=-1).indices
    return torch.zeros_like(probs, dtype=torch.bool).scatter_(-1, indices, True)


def primary_attention(probs, k: int):
    """``(values, indices)`` of each query's top-``k`` keys: M ⊙ A_ref, stored sparsely as
    MotionClone stores its motion representation."""
    top = probs.float().topk(min(k, probs.shape[-1]), dim=-1)
    return top.values.detach(), top.indices


class _Recorded(Exception):
    """Raised by the last recording processor: the rest of the UNet is not needed."""


class RecordingAttnProcessor:
    """diffusers' ``AttnProcessor`` (diffusers 0.3x–0.4x) that keeps the attention probabilities.

    The computation is ``AttnProcessor.__call__``, repeated on purpose so the probabilities can
    be kept (scaled-dot-product attention never forms them). ``store[name]`` receives them;
    once every layer in ``expected`` has recorded, the forward pass is stopped.
    """

    def __init__(self, name: str, store: dict, expected: int, stop: bool = True):
        self.name, self.store, self.expected, self.stop = name, store, expected, stop

    def __call__(
        self,
        attn,
        hidden_states,
        encoder_hidden_states=None,
        attention_mask=None,
        temb=None,
        *args,
        **kwargs,
    ):
        import torch

        residual = hidden_states
        if attn.spatial_norm is not None:
            hidden_states = attn.spatial_norm(hidden_states, temb)
        input_ndim = hidden_states.ndim
        if input_ndim == 4:
            batch_size, channel, height, width = hidden_states.shape
            hidden_states = hidden_states.view(batch_size, channel, height * width).transpose(1, 2)
        batch_size, sequence_length, _ = (
            hidden_states.shape if encoder_hidden_states is None else encoder_hidden_states.shape
        )
        attention_mask = attn.prepare_attention_mask(attention_mask, sequence_length, batch_size)
        if attn.group_norm is not None:
            hidden_states = attn.group_norm(hidden_states.transpose(1, 2)).transpose(1, 2)
        query = attn.to_q(hidden_states)
        if encoder_hidden_states is None:
            encoder_hidden_states = hidden_states
        elif attn.norm_cross:
            encoder_hidden_states = attn.norm_encoder_hidden_states(encoder_hidden_states)
        key = attn.to_k(encoder_hidden_states)
        value = attn.to_v(encoder_hidden_states)
        query = attn.head_to_batch_dim(query)
        key = attn.head_to_batch_dim(key)
        value = attn.head_to_batch_dim(value)

        attention_probs = attn.get_attention_scores(
            query, key, attention_mask
        )  # (B·h·w·heads, T, T)
        self.store[self.name] = attention_probs
        if self.stop and len(self.store) >= self.expected:
            raise _Recorded

        hidden_states = torch.bmm(attention_probs, value)
        hidden_states = attn.batch_to_head_dim(hidden_states)
        hidden_states = attn.to_out[0](hidden_states)
        hidden_states = attn.to_out[1](hidden_states)
        if input_ndim == 4:
            hidden_states = hidden_states.transpose(-1, -2).reshape(
                batch_size, channel, height, width
            )
        if attn.residual_connection:
            hidden_states = hidden_states + residual
        return hidden_states / attn.rescale_output_factor


def temporal_attention_layers(backbone, prefixes) -> dict:
    """``name -> Attention``: the ``attn1`` of every ``TransformerTemporalModel`` block under one of
    ``prefixes``, in model order, found through the attention-layer locator hook."""
    from cammimic.backbones import as_backbone
    from cammimic.plugins import get_host

    model = as_backbone(backbone).denoiser
    name = getattr(backbone, "name", "?")
    if type(model).__name__ != "UNet3DConditionModel":
        raise CammimicError(
            f"motionclone guidance reads the frame-to-frame temporal attention of a UNet3D (zeroscope, modelscope, "
            f'mini, unet3d); backbone "{name}" is a {type(model).__name__}, which has none: see docs/plugins.md, '
            '"motionclone" (what Wan would need)'
        )
    located = get_host().locate_attention_layers(name, model, False)
    attention = []
    for (
        layer
    ) in located.temporal:  # the temporal LoRA's projections: ...transformer_blocks.M.attn1.to_q
        if layer.endswith(".attn1.to_q"):
            attention.append(layer[: -len(".to_q")])
    modules = dict(model.named_modules())
    temporal = {}
    for layer in attention:
        owner = layer.split(".transformer_blocks.")[0]
        if type(modules.get(owner)).__name__ == "TransformerTemporalModel":
            temporal[layer] = modules[layer]
    chosen = {n: m for n, m in temporal.items() if any(n.startswith(p + ".") for p in prefixes)}
    if not chosen:
        have = sorted(
            {n.split(".transformer_blocks.")[0].rsplit(".temp_attentions", 1)[0] for n in temporal}
        )
        raise CammimicError(
            f'motionclone guidance blocks {",".join(prefixes)!r} hold no temporal attention on backbone "{name}"; '
            f"those with some: {', '.join(have) or 'none'}"
        )
    return chosen


class MotionCloneGuidance:
    """The ``motionclone`` guidance term (see the module docstring)."""

    name = "motionclone"
    acts_on = "x0"  # the sampler hands it x̂₀, and z_t, t and t_I's embedding in ``state.extras``

    def __init__(
        self,
        *,
        weight=0.05,
        start=0.0,
        end=0.3,
        reference_timestep=400,
        top_k=1,
        blocks=("up_blocks.1",),
    ):
        self.weight, self.start, self.end = weight, start, end
        self.reference_timestep, self.top_k, self.blocks = reference_timestep, top_k, blocks
        self.context = None
        self.layers: dict = {}
        #: per layer: (values, indices) of the reference's top-k temporal attention
        self.reference: dict = {}
        #: per guided step: step, timestep, energy before the step, seconds
        self.history: list[dict] = []

    # -- recording --------------------------------------------------------------------------
    def record(self, latents, timestep, embeds) -> dict:
        """The temporal attention probabilities of one denoiser pass, per layer (the graph kept
        when grad is enabled). The original processors are back when this returns or raises."""
        store: dict = {}
        originals = {n: m.processor for n, m in self.layers.items()}
        try:
            for n, m in self.layers.items():
                m.set_processor(RecordingAttnProcessor(n, store, len(self.layers)))
            try:
                self.context.backbone.predict_noise(latents, timestep, embeds)
            except _Recorded:
                pass
        finally:
            for n, m in self.layers.items():
                m.set_processor(originals[n])
        missing = [n for n in self.layers if n not in store]
        if missing:
            raise CammimicError(
                f"motionclone guidance: the denoiser never ran the temporal attention {missing[0]}"
            )
        return store

    def energy(self, probs):
        """E = Σ_layers mean over M of (A_gen − A_ref)², from recorded probabilities."""
        import torch

        total = 0.0
        for n, (values, indices) in self.reference.items():
            current = probs[n]
            if current.shape[:-1] != indices.shape[:-1]:
                raise CammimicError(
                    f"motionclone guidance: the sample's temporal attention {n} has shape {tuple(current.shape)}, the "
                    f"reference's {tuple(indices.shape[:-1]) + (current.shape[-1],)}; sample at the reference's size"
                )
            gathered = torch.gather(current.float(), -1, indices.to(current.device))
            total = total + (gathered - values.to(current.device)).pow(2).mean()
        return total

    # -- the term ---------------------------------------------------------------------------
    def prepare(self, context) -> None:
        import torch

        from cammimic.sampling import initial_noise, make_generator

        backbone = context.backbone
        self.layers = temporal_attention_layers(
            backbone, self.blocks
        )  # refuses a DiT first, in one line
        if context.reference is None:
            raise CammimicError(
                "motionclone guidance needs the reference video's frames (GuidanceContext.reference)"
            )
        self.context, self.history = context, []
        frames = np.asarray(context.reference)
        num_frames = (
            len(context.homographies) + 1 if context.homographies is not None else len(frames)
        )
        if (
            len(frames) != num_frames
        ):  # a retimed motion ([motion] speed): frames at the output's times
            frames = frames[np.round(np.linspace(0, len(frames) - 1, num_frames)).astype(int)]
        if frames.shape[1:3] != (context.height, context.width):
            import PIL.Image

            frames = np.stack(
                [
                    np.asarray(
                        PIL.Image.fromarray(f).resize(
                            (context.width, context.height), PIL.Image.BICUBIC
                        )
                    )
                    for f in frames
                ]
            )
        with torch.no_grad():
            latents = backbone.encode_video(frames).float()
            noise = initial_noise(
                latents.shape, make_generator(int(context.seed) + 1), latents.device
            )
            tau = torch.tensor([self.reference_timestep], device=latents.device)
            noised = backbone.training_scheduler().add_noise(latents, noise, tau)
            empty = backbone.encode_prompt(
                [""]
            )  # MotionClone's reference pass: the unconditional prompt
            self.reference_input = (noised, tau, empty)
            probs = self.record(noised.to(backbone.dtype), tau, empty)
            self.reference = {n: primary_attention(p, self.top_k) for n, p in probs.items()}

    def gradient(self, latents, timestep, embeds):
        """``(E, ∇E)`` of the model input ``latents`` (z_t) at ``timestep`` under ``embeds``."""
        import torch

        z = latents.detach().float().clone()
        with torch.enable_grad():
            z.requires_grad_(True)
            energy = self.energy(self.record(z.to(self.context.backbone.dtype), timestep, embeds))
            (grad,) = torch.autograd.grad(energy, z)
        return float(energy.detach()), grad

    def apply(self, latents, state):
        last = state.num_steps - 1
        if self.context is None or state.step >= last or self.weight == 0:
            return latents
        position = state.step / max(last - 1, 1)
        if not self.start <= position <= self.end:
            return latents
        z_t, embeds = state.extras.get("model_input"), state.extras.get("prompt_embeds")
        if z_t is None or embeds is None:
            raise CammimicError(
                "motionclone guidance needs the sampler to pass model_input and prompt_embeds in "
                "GuidanceState.extras (cammimic.sampling.sample does)"
            )
        started = time.perf_counter()
        # one gradient per step, as MotionClone: z_t is fixed within a step, so more would repeat it
        energy, grad = self.gradient(z_t, state.timestep, embeds)
        rms = grad.pow(2).mean().sqrt()
        guided = latents
        if bool(rms.isfinite()) and float(rms) > 0:
            guided = (latents - self.weight * grad.to(latents.dtype) / rms).detach()
        self.history.append(
            {
                "step": state.step,
                "timestep": int(state.timestep),
                "energy": energy,
                "seconds": time.perf_counter() - started,
            }
        )
        return guided
