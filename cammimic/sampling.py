"""Phase 2: the denoising loop, owned here instead of a diffusers pipeline.

:func:`phase2` is CamMimic's Phase 2 as one unit: encode the weak video to z_P, make its latent
mask, set the LoRA scales, sample with guidance, decode.

``TextToVideoSDPipeline`` is deprecated and has no per-step callback; the loop below is the
same algorithm (classifier-free guidance over the backbone's sampler: DDIM or DPM-Solver++ for a UNet3D,
UniPC or flow-matching Euler for Wan), written against
the :class:`cammimic.components.Backbone` interface so guidance terms can act after every
scheduler step and any backbone plugin can be sampled.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import attrs
import numpy as np

from cammimic.backbones import as_backbone, check_steps, max_steps, resolve_sampler
from cammimic.components import GuidanceState
from cammimic.errors import CammimicError
from cammimic.lora import set_lora_scale
from cammimic.progress import progress_bar

__all__ = [
    "phase2",
    "latent_mask",
    "erode_mask",
    "sample",
    "make_generator",
    "initial_noise",
    "check_steps",
    "max_steps",
    "to_clean",
    "from_clean",
    "check_finite",
    "plan_windows",
    "window_weights",
    "sample_windows",
    "WindowedSample",
    "frame_by_frame",
]


def phase2(
    backbone,
    weak,
    prompt: str,
    *,
    settings,
    seed: int,
    guidance_terms: Sequence[Any] = (),
    progress: bool = True,
    noise=None,
    reference=None,
    reference_prompt: str = "",
    max_frames: int | None = None,
):
    """CamMimic's Phase 2: the video for ``prompt``, drawn towards the weak video.

    Args:
        backbone: a loaded :class:`~cammimic.components.Backbone` holding the ``spatial`` and
            ``temporal`` LoRAs (finetuned in Phase 1 or loaded from files).
        weak: the weak video (:class:`~cammimic.methods.homography.Transfer`: ``frames``
            ``(T, H, W, 3)`` uint8 and validity ``masks`` ``(T, H, W)``); its size and length
            are the output's.
        prompt: t_I, the sampling prompt.
        settings: the ``[sampling]`` section: LoRA scales, steps, CFG scale, negative prompt,
            scheduler, eta.
        seed: seeds the initial noise (drawn on the CPU, so the same on every device).
        guidance_terms: applied after every scheduler step, drawing towards z_P where the mask is 1.
        noise: the noise initialiser of x_T (:class:`cammimic.noise.NoiseInitialiser`; ``None``:
            i.i.d.); it sees the reference's homographies.
        reference, reference_prompt: the reference video's frames ``(T, H, W, 3)`` uint8 and t_R,
            for guidance terms that read the reference itself (their ``prepare``).
        max_frames: the most frames the backbone samples at once (``cammimic.backbones.max_frames``);
            a longer weak video is sampled in overlapping windows (:func:`sample_windows`, overlap
            ``settings["window_overlap"]``). ``None``: all at once.

    Returns:
        The decoded video, ``(T, H, W, 3)`` uint8.
    """
    backbone = as_backbone(backbone)
    model = backbone.denoiser
    set_lora_scale(model, "spatial", settings["spatial_scale"])
    set_lora_scale(model, "temporal", settings["temporal_scale"])
    if max_frames and len(weak.frames) > int(
        max_frames
    ):  # longer than the backbone's clip (issue 25 §4)
        return sample_windows(
            backbone,
            weak,
            prompt,
            settings=settings,
            seed=seed,
            window=int(max_frames),
            overlap=settings.get("window_overlap", 0),
            guidance_terms=guidance_terms,
            progress=progress,
            noise=noise,
            reference=reference,
            reference_prompt=reference_prompt,
        ).frames
    target = backbone.encode_video(weak.frames)  # z_P, (1, C, T', h, w)
    num_frames, height, width = weak.frames.shape[:3]
    mask = latent_mask(weak.masks, backbone.vae_scale_factor, backbone.frame_groups(num_frames))
    prepared = [term for term in guidance_terms if hasattr(term, "prepare")]
    if (
        prepared
    ):  # terms that need the backbone or the reference itself (MotionClone, CameraScore guidance)
        from cammimic.components import GuidanceContext

        context = GuidanceContext(
            backbone=backbone,
            prompt=prompt,
            homographies=weak.reference_motion.homographies,
            width=width,
            height=height,
            reference=reference,
            reference_prompt=reference_prompt,
            settings=settings,
            seed=int(seed),
        )
        for term in prepared:
            term.prepare(context)
    # an image-to-video backbone samples conditioned on the user image: the weak video's first frame
    with backbone.conditioned_on(weak.frames[0]):
        latents = sample(
            backbone,
            prompt,
            num_frames=num_frames,
            width=width,
            height=height,
            steps=settings["steps"],
            guidance_scale=settings["guidance_scale"],
            negative_prompt=settings["negative_prompt"],
            scheduler=settings["scheduler"],
            eta=settings["eta"],
            seed=int(seed),
            guidance_terms=guidance_terms,
            target=target,
            mask=mask,
            progress=progress,
            noise=noise,
            homographies=weak.reference_motion.homographies,
        )
    check_finite(latents)
    return backbone.decode_latents(latents)


def plan_windows(num_frames: int, window: int, overlap: int = 0) -> list[tuple[int, int]]:
    """``[(start, end), …]``: windows of ``window`` frames covering ``num_frames`` frames, each two
    neighbours sharing at least ``overlap`` frames (``0``: a quarter of the window), spread evenly
    (the fewest windows that do). A clip within ``window`` is one window ``(0, num_frames)``.

    >>> plan_windows(14, 8, 2)
    [(0, 8), (6, 14)]
    """
    total, window = int(num_frames), int(window)
    if total <= window:
        return [(0, total)]
    auto = max(1, window // 4)
    shared = int(overlap) or auto
    if not 1 <= shared <= window // 2:
        raise CammimicError(
            f"[sampling] window_overlap = {overlap} frames does not fit the backbone's {window}-frame window "
            f"(--frames {total} is sampled in windows); use 1 to {window // 2}, or 0 for a quarter ({auto})"
        )
    count = 1 + -(-(total - window) // (window - shared))  # ceil: the fewest windows
    return [
        (s, s + window) for s in (round(k * (total - window) / (count - 1)) for k in range(count))
    ]


def window_weights(windows: Sequence[tuple[int, int]], num_frames: int) -> np.ndarray:
    """``(len(windows), num_frames)`` float64 weights of each window's frames in the blend: a linear
    crossfade over each overlap (window k's weight rises as (i + 1)/(L + 1) over the L frames it
    shares with window k − 1, which falls as (L − i)/(L + 1)), 1 elsewhere, 0 outside the window;
    every frame's weights sum to 1."""
    weights = np.zeros((len(windows), int(num_frames)))
    for k, (start, end) in enumerate(windows):
        t = np.arange(start, end, dtype=np.float64)
        w = np.ones(end - start)
        if k > 0:
            shared = windows[k - 1][1] - start
            w = np.minimum(w, (t - start + 1) / (shared + 1))
        if k < len(windows) - 1:
            shared = end - windows[k + 1][0]
            w = np.minimum(w, (end - t) / (shared + 1))
        weights[k, start:end] = w
    return weights / weights.sum(axis=0, keepdims=True)


@attrs.frozen(eq=False)
class WindowedSample:
    """Phase 2 of a video longer than the backbone's clip (:func:`sample_windows`)."""

    windows: tuple[tuple[int, int], ...]  #: (start, end) video frames of each window
    weights: np.ndarray  #: (windows, T) blend weights, :func:`window_weights`
    latents: tuple  #: each window's sampled latents (1, C, T'_k, h, w)
    blended: Any  #: (1, C, T, h, w) the crossfaded latents (a frame-by-frame VAE), else None
    frames: np.ndarray  #: (T, H, W, 3) uint8, the output
    window_frames: tuple = ()  #: each window's decoded frames, when the blend is of decoded frames


def frame_by_frame(backbone, num_frames: int) -> bool:
    """Whether each latent frame holds one video frame (a UNet3D's VAE), so latents slice and blend by frame."""
    return [list(g) for g in as_backbone(backbone).frame_groups(num_frames)] == [
        [i] for i in range(num_frames)
    ]


def sample_windows(
    backbone,
    weak,
    prompt: str,
    *,
    settings,
    seed: int,
    window: int,
    overlap: int = 0,
    guidance_terms: Sequence[Any] = (),
    progress: bool = True,
    noise=None,
    reference=None,
    reference_prompt: str = "",
    seam: bool = True,
) -> WindowedSample:
    """Phase 2 in overlapping windows of ``window`` frames along the one camera path (issue 25 §4).

    Each window's weak video is cut from the one full-length weak video, so its homography
    guidance continues the path; each window after the first is also drawn, on the frames it shares
    with the previous one, towards that window's result (mask 1 there), so the seam does not jump.
    For a VAE that encodes frame by frame (UNet3D), the windows' initial noise is cut from one draw
    for the whole video (the shared frames start alike), their latents are crossfaded
    (:func:`window_weights`) and decoded once; for a VAE that compresses time (Wan), each window is
    decoded and the decoded frames are crossfaded. The LoRA scales are the caller's
    (:func:`phase2` sets them). ``seam=False`` leaves out the pull towards the previous window
    (guided by the weak video alone; for measuring what the pull does).
    """
    import torch

    from cammimic.components import GuidanceContext

    backbone = as_backbone(backbone)
    num_frames, height, width = weak.frames.shape[:3]
    windows = plan_windows(num_frames, window, overlap)
    weights = window_weights(windows, num_frames)
    homographies = np.asarray(weak.reference_motion.homographies)
    by_frame = frame_by_frame(backbone, window)
    factor = backbone.vae_scale_factor
    if by_frame:
        full_target = backbone.encode_video(
            weak.frames
        )  # one frame at a time: a window's slice is its encoding
        full_mask = latent_mask(weak.masks, factor)
        shape = backbone.latent_shape(num_frames, width, height)
        generator = make_generator(seed)
        if noise is None:
            x_t = initial_noise(shape, generator, "cpu")
        else:
            from cammimic.noise import NoiseContext, draw

            x_t = draw(
                noise,
                generator,
                NoiseContext(
                    shape=shape,
                    homographies=homographies,
                    width=width,
                    height=height,
                    frame_groups=backbone.frame_groups(num_frames),
                ),
            )
    prepared = [term for term in guidance_terms if hasattr(term, "prepare")]
    latents_k: list = []
    decoded_k: list = []
    histories: dict[int, list] = {}
    for k, (start, end) in enumerate(windows):
        path = homographies[start : end - 1]  # the window's part of the one camera path
        shared = windows[k - 1][1] - start if k and seam else 0
        prev_start = windows[k - 1][0] if k else 0
        initial = None
        if by_frame:
            target = full_target[:, :, start:end].clone()
            mask = full_mask[:, :, start:end].clone()
            if shared:  # the previous window's latents on the shared frames, valid everywhere
                target[:, :, :shared] = latents_k[-1][:, :, start - prev_start :].to(target)
                mask[:, :, :shared] = 1
            initial = x_t[:, :, start:end]
        else:
            frames, masks = weak.frames[start:end].copy(), weak.masks[start:end].copy()
            if shared:  # the previous window's decoded frames on the shared frames
                frames[:shared] = decoded_k[-1][start - prev_start :]
                masks[:shared] = True
            target = backbone.encode_video(frames)
            mask = latent_mask(masks, factor, backbone.frame_groups(end - start))
        if prepared:
            ref = None
            if (
                reference is not None and len(reference) > 1
            ):  # the reference's part under this window
                scale = (len(reference) - 1) / max(1, num_frames - 1)
                ref = np.asarray(reference)[np.round(np.arange(start, end) * scale).astype(int)]
            context = GuidanceContext(
                backbone=backbone,
                prompt=prompt,
                homographies=path,
                width=width,
                height=height,
                reference=ref,
                reference_prompt=reference_prompt,
                settings=settings,
                seed=int(seed),
            )
            for term in prepared:
                term.prepare(context)
        latents = sample(
            backbone,
            prompt,
            num_frames=end - start,
            width=width,
            height=height,
            steps=settings["steps"],
            guidance_scale=settings["guidance_scale"],
            negative_prompt=settings["negative_prompt"],
            scheduler=settings["scheduler"],
            eta=settings["eta"],
            seed=(int(seed) * 1_000_003 + k + 1)
            % 2**63,  # the window's own draws (its z_P noise, DDIM's η)
            guidance_terms=guidance_terms,
            target=target,
            mask=mask,
            progress=progress,
            noise=noise,
            homographies=path,
            initial_latents=initial,
        )
        check_finite(latents)
        latents_k.append(latents)
        for term in (
            guidance_terms
        ):  # each window's prepare() starts a term's history afresh: keep them all
            if getattr(term, "history", None):
                histories.setdefault(id(term), []).extend(
                    {**entry, "window": k} for entry in term.history
                )
        if not by_frame:
            decoded_k.append(backbone.decode_latents(latents))
    for term in guidance_terms:
        if id(term) in histories:
            term.history = histories[id(term)]
    if by_frame:
        w = torch.from_numpy(weights).to(device=latents_k[0].device, dtype=torch.float32)
        blended = torch.zeros_like(full_target, dtype=torch.float32)
        for k, (start, end) in enumerate(windows):
            blended[:, :, start:end] += (
                w[k, start:end].reshape(1, 1, -1, 1, 1) * latents_k[k].float()
            )
        frames = backbone.decode_latents(blended)
        return WindowedSample(
            windows=tuple(windows),
            weights=weights,
            latents=tuple(latents_k),
            blended=blended,
            frames=frames,
        )
    out = np.zeros((num_frames, height, width, 3))
    for k, (start, end) in enumerate(windows):
        out[start:end] += weights[k, start:end, None, None, None] * decoded_k[k]
    frames = np.clip(np.round(out), 0, 255).astype(np.uint8)
    return WindowedSample(
        windows=tuple(windows),
        weights=weights,
        latents=tuple(latents_k),
        blended=None,
        frames=frames,
        window_frames=tuple(decoded_k),
    )


def check_finite(latents) -> None:
    """Refuse a sampling result holding NaN or inf: decoded, it would be written as a black video
    with exit 0 (a LoRA of huge weights or scale, or a diverging guidance)."""
    import torch

    finite = torch.isfinite(latents)
    if not bool(finite.all()):
        share = 1.0 - float(finite.float().mean())
        raise CammimicError(
            f"sampling produced NaN or inf in {share:.0%} of the latents, so there is no video to write; the LoRAs "
            "or guidance diverged: check the LoRA files (weights, alpha), lower [sampling] spatial_scale/"
            "temporal_scale and --guidance-weight, or finetune again with a lower --lr"
        )


def latent_mask(
    masks: np.ndarray, factor: int, groups: Sequence[Sequence[int]] | None = None, *, erode: int = 0
):
    """Pixel validity masks ``(T, H, W)`` to a latent mask ``(1, 1, T', H/f, W/f)``.

    A latent cell counts as valid only if every pixel under it is (a min-pool), so the guidance
    never pulls towards the black fill of out-of-view regions. ``groups`` lists the frames each
    latent frame holds (:meth:`~cammimic.components.Backbone.frame_groups`; ``None``: one each); a latent
    frame of a VAE that compresses time is valid where all of its frames are. ``erode`` then
    removes the cells within that many latent cells of an invalid one (:func:`erode_mask`).
    """
    import torch

    m = torch.from_numpy(np.ascontiguousarray(masks)).float()[:, None]  # T,1,H,W
    m = -torch.nn.functional.max_pool2d(-m, kernel_size=factor, stride=factor)
    if groups is not None and [list(g) for g in groups] != [[i] for i in range(m.shape[0])]:
        m = torch.stack([m[list(g)].amin(dim=0) for g in groups])  # T',1,h,w
    return erode_mask(m.permute(1, 0, 2, 3)[None], erode)  # 1,1,T',h,w


def erode_mask(mask, cells: int):
    """A latent mask (``(..., h, w)``, e.g. ``(1, 1, T', h, w)``) eroded by ``cells`` latent cells.

    A min-pool over a ``(2k+1) x (2k+1)`` window of each frame: a cell stays valid only if no cell
    within Chebyshev distance ``k`` is invalid. The VAE encoder's convolutions carry the fill of an
    invalid cell into its neighbours' latents, so those are not the user image's latents
    (docs/method.md#the-latent-mask-and-the-vaes-receptive-field). The frame's edge is not fill
    (an image without fill has the same edge), so cells beyond it count as valid. ``cells = 0``
    returns ``mask`` itself.
    """
    import torch

    k = int(cells)
    if k == 0 or mask is None:
        return mask
    if mask.ndim < 2:
        raise CammimicError(
            f"erode_mask needs a latent mask (..., h, w), got shape {tuple(mask.shape)}"
        )
    m = mask.float().reshape(-1, 1, *mask.shape[-2:])
    # max_pool pads with -inf, so the padding of -m never wins: beyond the edge counts as valid
    eroded = -torch.nn.functional.max_pool2d(-m, kernel_size=2 * k + 1, stride=1, padding=k)
    return eroded.reshape(mask.shape).to(mask.dtype)


def make_generator(seed: int):
    """A CPU ``torch.Generator``: CPU draws give the same noise on every device."""
    import torch

    return torch.Generator("cpu").manual_seed(int(seed) % 2**63)


def initial_noise(shape, generator, device, dtype=None):
    """Standard normal latents drawn on the CPU (device-independent), then moved."""
    import torch

    return torch.randn(shape, generator=generator, dtype=torch.float32).to(
        device=device, dtype=dtype or torch.float32
    )


def sample(
    backbone,
    prompt: str,
    *,
    num_frames: int,
    width: int,
    height: int,
    steps: int = 50,
    guidance_scale: float = 9.0,
    negative_prompt: str = "",
    scheduler: str = "auto",
    eta: float = 0.0,
    seed: int = 0,
    guidance_terms: Sequence[Any] = (),
    target=None,
    mask=None,
    prompt_embeds=None,
    progress: bool = True,
    callback: Callable[[int, Any, Any], None] | None = None,
    noise=None,
    homographies=None,
    initial_latents=None,
):
    """Sample video latents ``(1, C, T', h, w)`` from ``backbone`` for ``prompt``.

    Args:
        num_frames, width, height: the video's; the latents' shape is the backbone's
            (:meth:`~cammimic.components.Backbone.latent_shape`: ``T' = T`` for a UNet3D, ``(T − 1)/4 + 1`` for Wan).
        scheduler: one of the backbone's samplers; ``"auto"`` = its default (``ddim``, ``unipc``).
        guidance_terms: :class:`~cammimic.components.GuidanceTerm` objects applied in order after
            every scheduler step (each decides itself whether to act, e.g. not after the last).
        target: latents the guidance draws towards (z_P), ``(1, C, T', h, w)``.
        mask: 1 where ``target`` is valid, broadcastable to the latents.
        prompt_embeds: precomputed ``(2, L, D)`` embeddings of ``[negative_prompt, prompt]``.
        callback: ``callback(step, timestep, latents)`` after each step (after guidance).
        noise: the noise initialiser of x_T (``None``: i.i.d. standard normal, as before).
        homographies: the reference's frame-to-frame homographies ``(T − 1, 3, 3)`` at the
            output's pixel size, which a noise initialiser may follow.
        noise: the noise initialiser of x_T (``None``: i.i.d. standard normal, as before).
        homographies: the reference's frame-to-frame homographies ``(T − 1, 3, 3)`` at the
            output's pixel size, which a noise initialiser may follow.
        initial_latents: x_T before the sampler's scaling, drawn by the caller (a window's slice
            of the whole video's noise, :func:`sample_windows`); ``None``: drawn here.

    Latents are kept in float32 between steps; the denoiser runs in the backbone's dtype.
    """
    import torch

    backbone = as_backbone(backbone)
    device = backbone.device
    model = backbone.denoiser
    if hasattr(model, "eval"):
        model.eval()  # no LoRA dropout (or any dropout) while sampling
    scheduler = resolve_sampler(backbone, scheduler)
    sched = backbone.sampling_scheduler(scheduler)
    check_steps(sched, steps, scheduler)
    sched.set_timesteps(steps, device=device)
    use_cfg = guidance_scale > 1.0
    with torch.no_grad():
        if prompt_embeds is None:
            prompt_embeds = backbone.encode_prompt([negative_prompt, prompt])
        embeds = prompt_embeds if use_cfg else prompt_embeds[1:]

        generator = make_generator(seed)
        shape = backbone.latent_shape(num_frames, width, height)
        if initial_latents is not None:
            latents = initial_latents.to(device=device, dtype=torch.float32)
        elif noise is None:
            latents = initial_noise(shape, generator, device)
        else:
            from cammimic.noise import NoiseContext, draw

            context = NoiseContext(
                shape=shape,
                homographies=homographies,
                width=width,
                height=height,
                frame_groups=backbone.frame_groups(num_frames),
            )
            latents = draw(noise, generator, context).to(device)
        latents = latents * getattr(sched, "init_noise_sigma", 1.0)
        step_kwargs = {}
        if "eta" in _step_parameters(sched):
            step_kwargs = {"eta": eta, "generator": generator}
        noised_target = None
        target_noise = None
        if target is not None:
            target = target.to(device=device, dtype=torch.float32)
            target_noise = initial_noise(shape, generator, device)
        if mask is not None:
            mask = mask.to(device=device, dtype=torch.float32)
        timesteps = list(sched.timesteps)
        # terms without ``acts_on`` (third-party ones written before it) act on z_t after the step
        on_clean = [term for term in guidance_terms if getattr(term, "acts_on", "z_t") == "x0"]
        on_latents = [term for term in guidance_terms if getattr(term, "acts_on", "z_t") != "x0"]
        for i, t in enumerate(progress_bar(timesteps, desc="sampling", disable=not progress)):
            model_in = torch.cat([latents] * 2) if use_cfg else latents
            if hasattr(sched, "scale_model_input"):  # flow-matching Euler has none (an identity)
                model_in = sched.scale_model_input(model_in, t)
            model_in, t_in = backbone.condition(model_in, t)  # unchanged for text-to-video
            noise = backbone.predict_noise(model_in.to(backbone.dtype), t_in, embeds).float()
            if use_cfg:
                uncond, cond = noise.chunk(2)
                noise = uncond + guidance_scale * (cond - uncond)
            if (
                on_clean
            ):  # guide the predicted clean latents, then hand the scheduler the matching output
                # model_input (z_t as the model sees it) and prompt_embeds (t_I's): for terms that run the
                # denoiser themselves (MotionClone's gradient through the temporal attention)
                state = GuidanceState(
                    step=i,
                    num_steps=len(timesteps),
                    timestep=t,
                    target=target,
                    mask=mask,
                    extras={
                        "acts_on": "x0",
                        "model_input": model_in[-1:],
                        "prompt_embeds": embeds[-1:],
                    },
                )
                clean = guided = to_clean(sched, noise, latents, i, t)
                for term in on_clean:
                    guided = term.apply(guided, state)
                if guided is not clean:  # untouched steps stay bit-identical to unguided sampling
                    noise = from_clean(sched, guided, latents, i, t)
            out = sched.step(noise, t, latents, **step_kwargs)
            latents = out.prev_sample
            if on_latents:
                next_t = timesteps[i + 1] if i + 1 < len(timesteps) else None
                if target is not None and next_t is not None:
                    noised_target = backbone.noise_to(target, target_noise, next_t, sched)
                state = GuidanceState(
                    step=i,
                    num_steps=len(timesteps),
                    timestep=t,
                    target=target,
                    mask=mask,
                    extras={"noised_target": noised_target, "acts_on": "z_t"},
                )
                for term in on_latents:
                    latents = term.apply(latents, state)
            if callback is not None:
                callback(i, t, latents)
        # an image-to-video backbone: the conditioning frame as the denoiser saw it (diffusers'
        # expand_timesteps pipelines do the same after the loop); unchanged for text-to-video
        if timesteps:
            latents, _ = backbone.condition(latents, timesteps[-1])
    return latents


def _levels(sched, index: int, timestep):
    """``(kind, a, s)``: the model's output type and the noise level of step ``index`` as
    ``x_t = a·x₀ + s·ε`` (DDPM: a = √ᾱ_t, s = √(1 − ᾱ_t); flow matching: a = 1 − σ, s = σ),
    read from the scheduler the way its ``step`` reads them."""
    cfg = sched.config
    kind = cfg.get("prediction_type", "epsilon")
    if kind == "flow_prediction" or type(sched).__name__.startswith("FlowMatch"):
        sigma = float(sched.sigmas[index])
        return "flow", 1.0 - sigma, sigma
    alphas_cumprod = getattr(sched, "alphas_cumprod", None)
    if alphas_cumprod is None:
        raise CammimicError(
            f'guidance with acts_on = "x0" cannot read the noise level of the {type(sched).__name__} sampler; '
            'use acts_on = "z_t"'
        )
    ab = float(alphas_cumprod[int(timestep)])
    return kind, ab**0.5, (1.0 - ab) ** 0.5


def to_clean(sched, output, latents, index: int, timestep):
    """The clean latents x̂₀ that the model's ``output`` (ε, v, x₀ or flow velocity ε − x₀, as
    the scheduler's ``prediction_type`` says) predicts from ``latents`` at step ``index``."""
    kind, a, s = _levels(sched, index, timestep)
    if kind == "flow":
        return latents - s * output
    if kind == "epsilon":
        return (latents - s * output) / a
    if kind == "v_prediction":
        return a * latents - s * output
    if kind == "sample":
        return output
    raise CammimicError(
        f'guidance with acts_on = "x0" does not know prediction_type \'{kind}\'; use acts_on = "z_t"'
    )


def from_clean(sched, clean, latents, index: int, timestep):
    """The model output that predicts ``clean`` from ``latents`` at step ``index``: the inverse of
    :func:`to_clean`, with the noise implied by ``latents`` and ``clean``."""
    kind, a, s = _levels(sched, index, timestep)
    if kind == "flow":
        return (latents - clean) / s
    if kind == "sample":
        return clean
    eps = (latents - a * clean) / s
    return eps if kind == "epsilon" else a * eps - s * clean


def _step_parameters(sched) -> set[str]:
    import inspect

    return set(inspect.signature(sched.step).parameters)
