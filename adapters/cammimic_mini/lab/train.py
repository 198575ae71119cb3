"""Train ``mini`` from a seed: the VAE, then the UNet3D and the text encoder, then the bundle.

    python -m cammimic_mini.lab.train --work ~/.cache/cammimic-mini            # train (resumes)
    python -m cammimic_mini.lab.train --work ~/.cache/cammimic-mini --export adapters/cammimic_mini/weights

Everything is resumable: the work directory keeps the trained VAE, the cached clip latents and
the latest UNet checkpoint (safetensors + JSON, no pickle); running the same command again
continues from there, bit-exactly (each step's randomness is drawn from ``seed`` and the step
number alone). ``--export`` writes the EMA weights in float16 in diffusers layout, the layout
``cammimic_unet3d`` loads.

Recipe (docs/mini.md has the measured curves and timings):

1. Clips: ``--clips`` random clips of :data:`cammimic_mini.lab.data.TRAIN_PHOTOS` (8 frames, 64x64)
   under known camera motion with captions naming content and motion.
2. VAE: an ``AutoencoderKL`` with three blocks (scale factor 4: 64x64 frames -> 16x16 latents),
   trained on random 32x32 crops of the clips' frames with L1 + an edge (Sobel) term + a small KL term; its
   ``scaling_factor`` is set to 1 / std of the latents, as Stable Diffusion's was.
3. Latents of every clip are cached once (posterior mean, the same as ``encode_video``).
4. UNet3D + CLIP text encoder (bytes, plus one token per motion or speed word): epsilon prediction on zeroscope's noise
   schedule, min-SNR-5 loss weighting, AdamW with warm-up, EMA of the weights, captions dropped
   10 % of the time (classifier-free guidance), and 15 % of steps in "image mode" (one frame,
   temporal modules bypassed, a content-only caption), the pass Phase 1's spatial LoRA trains.

Options for experiments from a checkpoint, each recorded in it: ``--high-noise-max``,
``--motion-words-from``, ``--timestep-min``, ``--direction-weight`` (docs/mini.md has their A/Bs).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path

import numpy as np

__all__ = ["main", "export", "trim_log"]

UNET_CHECKPOINT = "unet-checkpoint"
LOG_FIELDS = ("step", "loss", "video_loss", "image_loss", "lr", "seconds_per_step", "elapsed")


def _log(msg: str) -> None:
    print(time.strftime("%H:%M:%S"), msg, flush=True)


def trim_log(path: Path, start: int) -> None:
    """Keep a loss log's rows of steps ``<= start``, one per step (the last written), in step order.

    A run that stopped after its last checkpoint logged steps it will redo on resuming; without
    this they would appear twice in the log and in the plotted curves.
    """
    if not path.is_file():
        return
    lines = path.read_text(encoding="utf-8").splitlines()
    if not lines:
        return
    header = [] if lines[0].split(",", 1)[0].isdigit() else lines[:1]  # the VAE's log has none
    rows: dict[int, str] = {}
    for line in lines[len(header) :]:
        step = line.split(",", 1)[0]
        if step.isdigit() and int(step) <= start:
            rows[int(step)] = line
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("\n".join([*header, *(rows[k] for k in sorted(rows))]) + "\n", encoding="utf-8")
    os.replace(tmp, path)


# --- safetensors + JSON state -------------------------------------------------------------------


def _save_state(directory: Path, tensors: dict, meta: dict) -> None:
    """Write tensors and JSON atomically: a crash never leaves a half checkpoint behind."""
    from safetensors.torch import save_file

    tmp = directory.with_name(directory.name + ".tmp")
    tmp.mkdir(parents=True, exist_ok=True)
    save_file(
        {k: v.detach().contiguous().cpu() for k, v in tensors.items()},
        str(tmp / "state.safetensors"),
    )
    (tmp / "state.json").write_text(json.dumps(meta, indent=1), encoding="utf-8")
    old = directory.with_name(directory.name + ".old")
    if directory.exists():
        directory.rename(old)
    tmp.rename(directory)
    if old.exists():
        import shutil

        shutil.rmtree(old)


def _load_meta(directory: Path) -> dict:
    """The JSON half of a checkpoint, without reading its tensors."""
    return json.loads((directory / "state.json").read_text())


def _load_state(directory: Path):
    from safetensors.torch import load_file

    return load_file(str(directory / "state.safetensors")), json.loads(
        (directory / "state.json").read_text()
    )


def _optimizer_tensors(opt, prefix: str) -> tuple[dict, dict]:
    import torch

    state = opt.state_dict()
    tensors = {}
    for idx, st in state["state"].items():
        for k, v in st.items():
            tensors[f"{prefix}.{idx}.{k}"] = v if torch.is_tensor(v) else torch.tensor(v)
    return tensors, {"param_groups": state["param_groups"]}


def _restore_optimizer(opt, tensors: dict, meta: dict, prefix: str, params=None) -> None:
    """Load an optimizer's state; with ``params``, moments of a parameter that has grown since
    (an embedding with new rows) are padded with zeros, as for a parameter never stepped."""
    import torch

    state: dict = {}
    for key, v in tensors.items():
        if not key.startswith(prefix + "."):
            continue
        _, idx, name = key.split(".", 2)
        if params is not None and v.dim() > 0 and v.shape != params[int(idx)].shape:
            v = torch.cat([v, v.new_zeros(params[int(idx)].shape[0] - v.shape[0], *v.shape[1:])])
        state.setdefault(int(idx), {})[name] = v
    opt.load_state_dict({"state": state, "param_groups": meta["param_groups"]})


def _grown(saved: dict, current: dict) -> dict:
    """``saved`` weights, where one has fewer rows than the model's (a vocabulary that has
    grown since), completed with the model's own rows."""
    import torch

    out = dict(saved)
    for key, value in saved.items():
        want = current[key]
        if (
            value.shape != want.shape
            and value.dim() == want.dim()
            and value.shape[1:] == want.shape[1:]
            and value.shape[0] < want.shape[0]
        ):
            out[key] = torch.cat([value.to(want.dtype), want[value.shape[0] :].to(value.device)])
    return out


def _redraw_word_rows(text, ema_text, fresh_rows, *, byte_rows: int) -> None:
    """Give the word tokens (embedding rows from ``byte_rows`` on) their seeded initial values
    rescaled to the root-mean-square of the trained rows before them, in the model and its EMA."""
    import torch

    with torch.no_grad():
        for model in (text, ema_text):
            weight = model.get_input_embeddings().weight
            rms = weight[:byte_rows].pow(2).mean().sqrt()
            new = fresh_rows[byte_rows:].to(weight.device)
            weight[byte_rows:] = new * (rms / new.pow(2).mean().sqrt())


# --- models ------------------------------------------------------------------------------------------


def build(seed: int, preset: str = "mini"):
    """Random-weight components of a ``cammimic_unet3d.random_weights`` preset (``mini``; tests use ``tiny``)."""
    from cammimic_unet3d.random_weights import build_components

    return build_components(preset, seed=seed)


def _device(name: str):
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


# --- stage 1: clips ----------------------------------------------------------------------------------


def clips(work: Path, count: int, seed: int):
    """The training clips, made once and kept in ``work/clips.npz``."""
    from cammimic_mini.lab.data import make_dataset

    path = work / "clips.npz"
    if path.is_file():
        data = np.load(path, allow_pickle=False)
        if len(data["videos"]) == count:
            return (
                data["videos"],
                [str(c) for c in data["captions"]],
                [str(c) for c in data["contents"]],
            )
    _log(f"rendering {count} clips")
    videos, captions, _ = make_dataset(count, seed)
    contents = [c.split(", the camera")[0] for c in captions]
    tmp = work / "clips.tmp.npz"
    np.savez(tmp, videos=videos, captions=np.array(captions), contents=np.array(contents))
    os.replace(tmp, path)
    return videos, captions, contents


# --- stage 2: the VAE --------------------------------------------------------------------------------


def _sobel(x):
    import torch

    kx = torch.tensor([[-1.0, 0, 1], [-2, 0, 2], [-1, 0, 1]], device=x.device).view(1, 1, 3, 3)
    g = x.mean(1, keepdim=True)
    return torch.cat(
        [
            torch.nn.functional.conv2d(g, kx, padding=1),
            torch.nn.functional.conv2d(g, kx.transpose(2, 3), padding=1),
        ],
        1,
    )


def train_vae(
    work: Path,
    videos: np.ndarray,
    *,
    steps: int,
    seed: int,
    device,
    batch: int = 16,
    crop: int = 32,
):
    """Train the AutoencoderKL on the clips' frames; returns it with its scaling factor set."""
    import torch
    from diffusers import AutoencoderKL

    final = work / "vae"
    if (final / "config.json").is_file() and vae_steps(work) >= steps:
        return AutoencoderKL.from_pretrained(final).to(device)
    vae = build(seed)["vae"].to(device).train()
    opt = torch.optim.AdamW(vae.parameters(), lr=1e-3, weight_decay=0.0)
    ckpt = work / "vae-checkpoint"
    start = 0
    if ckpt.is_dir():
        tensors, meta = _load_state(ckpt)
        vae.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
        _restore_optimizer(opt, tensors, meta, "opt")
        start = meta["step"]
        _log(f"VAE: resuming at step {start}")
    frames = videos.reshape(-1, *videos.shape[2:])
    trim_log(work / "vae-log.csv", start)
    log = (work / "vae-log.csv").open("a", encoding="utf-8")
    t0 = time.perf_counter()
    for step in range(start, steps):
        g = torch.Generator().manual_seed(seed * 1_000_003 + step)
        idx = torch.randint(0, len(frames), (batch,), generator=g).numpy()
        # 32x32 crops: the VAE is convolutional, and a quarter of the pixels costs a quarter of the time
        y0, x0 = (int(v) for v in torch.randint(0, frames.shape[1] - crop + 1, (2,), generator=g))
        x = (
            torch.from_numpy(frames[idx, y0 : y0 + crop, x0 : x0 + crop])
            .permute(0, 3, 1, 2)
            .float()
            .to(device)
            / 127.5
            - 1
        )
        lr = (
            1e-3
            * min(1.0, (step + 1) / 100)
            * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * step / steps)))
        )
        for group in opt.param_groups:
            group["lr"] = lr
        post = vae.encode(x).latent_dist
        z = post.mean + post.std * torch.randn(post.mean.shape, generator=g).to(device)
        y = vae.decode(z).sample
        rec = (y - x).abs().mean()
        edge = (_sobel(y) - _sobel(x)).abs().mean()
        kl = post.kl().mean() / x[0].numel()
        loss = rec + 0.5 * edge + 1e-4 * kl
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(vae.parameters(), 1.0)
        opt.step()
        if (step + 1) % 25 == 0:
            log.write(
                f"{step + 1},{rec.item():.5f},{edge.item():.5f},{kl.item():.5f},{time.perf_counter() - t0:.1f}\n"
            )
            log.flush()
        if (step + 1) % 100 == 0:
            _log(
                f"VAE step {step + 1}/{steps}: L1 {rec.item():.4f} edge {edge.item():.4f} kl {kl.item():.3f}"
            )
        if (step + 1) % 500 == 0 or step + 1 == steps:
            tensors, meta = _optimizer_tensors(opt, "opt")
            tensors.update({f"model.{k}": v for k, v in vae.state_dict().items()})
            _save_state(ckpt, tensors, {**meta, "step": step + 1})
    log.close()
    vae.eval()
    with torch.no_grad():  # Stable Diffusion's recipe: scale latents to unit variance
        idx = np.random.default_rng(seed).choice(len(frames), min(2048, len(frames)), replace=False)
        zs = []
        for i in range(0, len(idx), 256):
            x = (
                torch.from_numpy(frames[idx[i : i + 256]]).permute(0, 3, 1, 2).float().to(device)
                / 127.5
                - 1
            )
            zs.append(vae.encode(x).latent_dist.mean)
        std = float(torch.cat(zs).std())
    vae.register_to_config(scaling_factor=round(1.0 / std, 5))
    vae.save_pretrained(final)
    (final / "cammimic_mini.json").write_text(json.dumps({"steps": steps}) + "\n", encoding="utf-8")
    _log(f"VAE done: scaling factor {vae.config.scaling_factor}")
    return vae


def vae_steps(work: Path) -> int:
    """Steps the saved VAE was trained for (0 if none): latents and the UNet belong to one VAE."""
    meta = work / "vae" / "cammimic_mini.json"
    return int(json.loads(meta.read_text())["steps"]) if meta.is_file() else 0


def cache_latents(work: Path, vae, videos: np.ndarray, device):
    """Latents ``(N, C, T, h, w)`` of every clip, scaled, in float16; cached in ``work/latents.npy``
    for the VAE of ``vae_steps(work)`` (a retrained VAE re-encodes)."""
    import torch

    path, tag = work / "latents.npy", work / "latents.json"
    if (
        path.is_file()
        and tag.is_file()
        and json.loads(tag.read_text()).get("vae_steps") == vae_steps(work)
    ):
        lat = np.load(path, allow_pickle=False)
        if len(lat) == len(videos):
            return lat
    _log("encoding the clips")
    n, t = videos.shape[:2]
    out = None
    with torch.no_grad():
        for i in range(0, n, 32):
            v = videos[i : i + 32]
            x = (
                torch.from_numpy(v.reshape(-1, *v.shape[2:])).permute(0, 3, 1, 2).float().to(device)
                / 127.5
                - 1
            )
            z = vae.encode(x).latent_dist.mean * vae.config.scaling_factor
            z = (
                z.reshape(len(v), t, *z.shape[1:])
                .permute(0, 2, 1, 3, 4)
                .cpu()
                .numpy()
                .astype(np.float16)
            )
            if out is None:
                out = np.empty((n, *z.shape[1:]), np.float16)
            out[i : i + len(v)] = z
    np.save(work / "latents.tmp.npy", out)
    os.replace(work / "latents.tmp.npy", path)
    tag.write_text(json.dumps({"vae_steps": vae_steps(work)}) + "\n", encoding="utf-8")
    return out


# --- stage 3: the UNet and the text encoder ----------------------------------------------------------


def train_unet(
    work: Path,
    latents: np.ndarray,
    captions: list[str],
    contents: list[str],
    *,
    steps: int,
    seed: int,
    device,
    batch: int,
    lr: float = 4e-4,
    warmup: int = 500,
    ema_decay: float = 0.999,
    image_fraction: float = 0.15,
    drop_caption: float = 0.1,
    snr_gamma: float = 5.0,
    checkpoint_every: int = 200,
    preset: str = "mini",
    high_noise_max: float = 1.0,
    high_noise_from: int = 0,
    motion_words_from: int = 0,
    timestep_min: int = 0,
    direction_weight: float = 0.0,
    direction_from: int = 0,
    direction_t_min: int = 500,
):
    """Train the UNet3D and text encoder on cached latents; resumes from ``work/unet-checkpoint``.

    ``high_noise_max`` > 1 multiplies each sample's loss weight by ``clip(1 / SNR(t), 1,
    high_noise_max)`` from step ``high_noise_from`` on: epsilon's error is tiny at high noise,
    where a clip's global layout and motion are decided, so without it those steps barely count.

    ``motion_words_from``: the step from which captions are tokenized with the preset's whole-word
    motion tokens (:data:`cammimic_unet3d.random_weights.MOTION_WORDS`); before it, byte by byte.
    At a switch after step 0 the word tokens' embeddings, untrained until then, are drawn afresh
    at the scale of the trained byte embeddings. A checkpoint from before the vocabulary grew
    (fewer embedding rows) resumes with the new rows appended.

    ``direction_weight`` > 0 adds, from step ``direction_from``, a ranking term on the clips of a
    video batch noised to ``t >= direction_t_min`` whose caption names a motion: the same noisy
    latents are denoised once more with the caption naming the opposite motion
    (:func:`cammimic_mini.lab.competence.opposite_caption`), and the model is asked to be a better
    denoiser under its own caption. Treating the noise error as Gaussian, ``kappa = D / 2`` (``D``
    latent elements) turns the two mean errors into a log-likelihood ratio; the term is
    ``softplus(-kappa (L_opposite - L_own)) / kappa``, which weighs like ``(L_own - L_opposite) / 2``
    while the model cannot tell the two apart and vanishes once it clearly can.
    """
    import copy

    import torch
    from cammimic_unet3d.backbone import UNet3DBackbone
    from cammimic_unet3d.random_weights import build_tokenizer
    from diffusers import DDPMScheduler

    from cammimic_mini.lab.competence import opposite_caption

    work.mkdir(parents=True, exist_ok=True)
    parts = build(seed, preset)
    unet, text, tok = parts["unet"].to(device), parts["text_encoder"].to(device), parts["tokenizer"]
    byte_tok = build_tokenizer(tok.model_max_length)
    has_words = len(tok.get_vocab()) > len(byte_tok.get_vocab())
    fresh_rows = text.get_input_embeddings().weight.detach().clone()
    sched = DDPMScheduler.from_config(parts["scheduler"].config)
    ema_unet, ema_text = (
        copy.deepcopy(unet).requires_grad_(False),
        copy.deepcopy(text).requires_grad_(False),
    )
    params = [*unet.parameters(), *text.parameters()]
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.01)
    ckpt = work / UNET_CHECKPOINT
    start = 0
    saved_vae = (
        _load_meta(ckpt).get("vae_steps", vae_steps(work)) if ckpt.is_dir() else vae_steps(work)
    )
    if saved_vae != vae_steps(work):
        stale = ckpt.with_name(f"{UNET_CHECKPOINT}-vae{saved_vae}")
        _log(f"UNet checkpoint was trained on another VAE: kept as {stale.name}, starting afresh")
        ckpt.rename(stale)
        if (work / "unet-log.csv").is_file():
            (work / "unet-log.csv").rename(work / f"unet-log-{stale.name}.csv")
    if ckpt.is_dir():
        tensors, meta = _load_state(ckpt)
        for prefix, model in (
            ("unet.", unet),
            ("text.", text),
            ("ema_unet.", ema_unet),
            ("ema_text.", ema_text),
        ):
            model.load_state_dict(
                _grown(
                    {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)},
                    model.state_dict(),
                )
            )
        _restore_optimizer(opt, tensors, meta, "opt", params)
        start = meta["step"]
        switched = meta.get("motion_words_from")
        if switched is not None and switched < start and switched != motion_words_from:
            _log(f"the checkpoint's run switched to word tokens at step {switched}: kept")
            motion_words_from = switched
        _log(f"UNet: resuming at step {start}")
    # The backbone wrapper gives the trainer the same temporal bypass Phase 1 uses.
    wrapper = UNet3DBackbone(
        name="mini",
        weights=str(work),
        device=device,
        dtype=torch.float32,
        denoiser=unet,
        vae=None,
        text_encoder=text,
        tokenizer=tok,
        scheduler_config=dict(sched.config),
        vae_scale_factor=4,
        latent_channels=int(latents.shape[1]),
    )
    ids_cache: dict[tuple[bool, str], torch.Tensor] = {}

    def token_ids(texts, words: bool):
        missing = [t for t in texts if (words, t) not in ids_cache]
        if missing:
            which = tok if words else byte_tok
            enc = which(
                missing,
                padding="max_length",
                max_length=tok.model_max_length,
                truncation=True,
                return_tensors="pt",
            ).input_ids
            ids_cache.update({(words, t): e for t, e in zip(missing, enc)})
        return torch.stack([ids_cache[(words, t)] for t in texts]).to(device)

    alphas = sched.alphas_cumprod.to(device)
    log_path = work / "unet-log.csv"
    trim_log(log_path, start)
    if not log_path.is_file():
        log_path.write_text(",".join(LOG_FIELDS) + "\n", encoding="utf-8")
    t_start = time.perf_counter()
    elapsed0 = _load_meta(ckpt).get("elapsed", 0.0) if ckpt.is_dir() else 0.0
    window: list[tuple[float, float | None, float | None]] = []
    unet.train()
    text.train()
    last = time.perf_counter()
    for step in range(start, steps):
        if step == motion_words_from and step > 0:
            _log(f"step {step}: captions from now on tokenized with whole-word motion tokens")
            _redraw_word_rows(text, ema_text, fresh_rows, byte_rows=len(byte_tok))
        g = torch.Generator().manual_seed(seed * 1_000_003 + 7919 * step + 1)
        torch.manual_seed(
            seed * 1_000_003 + 7919 * step + 2
        )  # the temporal convs' dropout (p = 0.1)
        image_mode = bool(torch.rand((), generator=g) < image_fraction)
        idx = torch.randint(0, len(latents), (batch,), generator=g).numpy()
        x0 = torch.from_numpy(latents[idx].astype(np.float32)).to(device)
        if image_mode:
            frame = torch.randint(0, x0.shape[2], (batch,), generator=g)
            x0 = x0[torch.arange(batch), :, frame][:, :, None]
            texts = [contents[i] for i in idx]
        else:
            texts = [captions[i] for i in idx]
        drop = torch.rand(batch, generator=g) < drop_caption
        texts = ["" if d else t for t, d in zip(texts, drop.tolist())]
        noise = torch.randn(x0.shape, generator=g).to(device)
        t = torch.randint(timestep_min, sched.config.num_train_timesteps, (batch,), generator=g).to(
            device
        )
        xt = sched.add_noise(x0, noise, t)
        lr_now = lr * min(1.0, (step + 1) / warmup)
        for group in opt.param_groups:
            group["lr"] = lr_now
        emb = text(token_ids(texts, step >= motion_words_from))[0]
        if image_mode:
            with wrapper.temporal_bypass():
                pred = unet(xt, t, encoder_hidden_states=emb).sample
        else:
            pred = unet(xt, t, encoder_hidden_states=emb).sample
        snr = alphas[t] / (1 - alphas[t])
        weight = torch.clamp(snr, max=snr_gamma) / snr  # min-SNR-γ for epsilon prediction
        if high_noise_max > 1 and step >= high_noise_from:
            weight = weight * torch.clamp(1 / snr, min=1.0, max=high_noise_max)
        per = ((pred - noise) ** 2).mean(dim=(1, 2, 3, 4))
        loss = (weight * per).mean()
        if direction_weight > 0 and step >= direction_from and not image_mode:
            pairs = [
                (i, opposite_caption(texts[i]))
                for i in range(batch)
                if int(t[i]) >= direction_t_min and texts[i]
            ]
            pairs = [(i, c) for i, c in pairs if c is not None]
            if pairs:
                sel = torch.tensor([i for i, _ in pairs], device=device)
                emb_o = text(token_ids([c for _, c in pairs], step >= motion_words_from))[0]
                pred_o = unet(xt[sel], t[sel], encoder_hidden_states=emb_o).sample
                opp = ((pred_o - noise[sel]) ** 2).mean(dim=(1, 2, 3, 4))
                kappa = noise[0].numel() / 2
                rank = torch.nn.functional.softplus(-kappa * (opp - per[sel])) / kappa
                loss = loss + direction_weight * rank.sum() / batch
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        decay = min(ema_decay, (1 + step) / (10 + step))
        with torch.no_grad():
            for ema, model in ((ema_unet, unet), (ema_text, text)):
                for pe, p in zip(ema.parameters(), model.parameters()):
                    pe.lerp_(p, 1 - decay)
        plain = float(per.detach().mean())
        window.append((plain, None if image_mode else plain, plain if image_mode else None))
        if (step + 1) % 25 == 0:
            now = time.perf_counter()
            vids = [w[1] for w in window if w[1] is not None]
            imgs = [w[2] for w in window if w[2] is not None]
            row = [
                step + 1,
                np.mean([w[0] for w in window]),
                np.mean(vids) if vids else "",
                np.mean(imgs) if imgs else "",
                lr_now,
                (now - last) / len(window),
                elapsed0 + now - t_start,
            ]
            with log_path.open("a", encoding="utf-8") as f:
                f.write(
                    ",".join(f"{v:.6g}" if isinstance(v, float) else str(v) for v in row) + "\n"
                )
            last, window = now, []
            if (step + 1) % 100 == 0:
                _log(f"UNet step {step + 1}/{steps}: loss {row[1]:.4f} ({row[5]:.2f} s/step)")
        if (step + 1) % checkpoint_every == 0 or step + 1 == steps:
            tensors, meta = _optimizer_tensors(opt, "opt")
            for prefix, model in (
                ("unet.", unet),
                ("text.", text),
                ("ema_unet.", ema_unet),
                ("ema_text.", ema_text),
            ):
                tensors.update({prefix + k: v for k, v in model.state_dict().items()})
            _save_state(
                ckpt,
                tensors,
                {
                    **meta,
                    "step": step + 1,
                    "seed": seed,
                    "batch": batch,
                    "lr": lr,
                    "vae_steps": vae_steps(work),
                    "high_noise_max": high_noise_max,
                    "high_noise_from": high_noise_from,
                    "motion_words_from": motion_words_from if has_words else None,
                    "timestep_min": timestep_min,
                    "direction_weight": direction_weight,
                    "direction_from": direction_from,
                    "direction_t_min": direction_t_min,
                    "elapsed": elapsed0 + time.perf_counter() - t_start,
                },
            )


# --- the bundle ----------------------------------------------------------------------------------------


def export(work: Path, out: Path, *, seed: int = 0, ema: bool = True, preset: str = "mini") -> Path:
    """Write the diffusers-layout bundle (float16 safetensors) from the latest checkpoint."""
    import torch
    from cammimic_unet3d.random_weights import write_model_index
    from diffusers import AutoencoderKL

    parts = build(seed, preset)
    tensors, meta = _load_state(work / UNET_CHECKPOINT)
    prefix = "ema_" if ema else ""
    rows = next(
        v.shape[0]
        for k, v in tensors.items()
        if k.startswith(f"{prefix}text.") and k.endswith("token_embedding.weight")
    )
    if rows < parts["text_encoder"].get_input_embeddings().num_embeddings or meta["step"] <= (
        meta.get("motion_words_from") or 0
    ):  # trained on bytes only: export it so
        from cammimic_unet3d.random_weights import build_tokenizer
        from transformers import CLIPTextModel

        parts["tokenizer"] = build_tokenizer(parts["tokenizer"].model_max_length)
        parts["text_encoder"] = CLIPTextModel(
            parts["text_encoder"].config.__class__(
                **{**parts["text_encoder"].config.to_dict(), "vocab_size": rows}
            )
        )
    for name, model in (("unet", parts["unet"]), ("text", parts["text_encoder"])):
        p = f"{prefix}{name}."
        model.load_state_dict(
            _grown(
                {k[len(p) :]: v for k, v in tensors.items() if k.startswith(p)}, model.state_dict()
            )
        )
    vae = AutoencoderKL.from_pretrained(work / "vae")
    out = Path(out)
    tmp = out.with_name(out.name + ".tmp")
    if tmp.exists():
        import shutil

        shutil.rmtree(tmp)
    for name, model in (
        ("unet", parts["unet"]),
        ("vae", vae),
        ("text_encoder", parts["text_encoder"]),
    ):
        model.to(torch.float16).save_pretrained(tmp / name, safe_serialization=True)
    parts["tokenizer"].save_pretrained(tmp / "tokenizer")
    parts["scheduler"].save_pretrained(tmp / "scheduler")
    write_model_index(
        tmp,
        _cammimic_mini={
            "unet_steps": meta["step"],
            "seed": seed,
            "ema": ema,
            "train_seconds": round(meta.get("elapsed", 0.0)),
            "batch": meta.get("batch"),
        },
    )
    if out.exists():
        import shutil

        shutil.rmtree(out)
    tmp.rename(out)
    return out


def plot(work: Path, out: Path) -> Path:
    """Loss curves of the VAE and the UNet (from the work directory's logs) as one PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 3.4), constrained_layout=True)
    vae = work / "vae-log.csv"
    if vae.is_file() and vae.stat().st_size:
        v = np.loadtxt(vae, delimiter=",", ndmin=2)
        axes[0].plot(v[:, 0], v[:, 1], label="L1")
        axes[0].plot(v[:, 0], v[:, 2], label="edge (Sobel L1)")
        axes[0].legend()
    axes[0].set(title="VAE", xlabel="step", ylabel="loss")
    unet = work / "unet-log.csv"
    if unet.is_file():
        import csv

        rows = list(csv.DictReader(unet.open(encoding="utf-8")))
        if rows:
            steps = [int(r["step"]) for r in rows]
            axes[1].plot(steps, [float(r["loss"]) for r in rows], label="all (MSE)")
            vids = [(int(r["step"]), float(r["video_loss"])) for r in rows if r["video_loss"]]
            axes[1].plot(*zip(*vids), alpha=0.7, label="clips")
            axes[1].legend()
    axes[1].set(title="UNet3D (noise MSE per 25 steps)", xlabel="step", yscale="log")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=90)
    plt.close(fig)
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m cammimic_mini.lab.train", description=__doc__.split("\n\n")[0]
    )
    p.add_argument(
        "--work",
        type=Path,
        default=Path("~/.cache/cammimic-mini").expanduser(),
        help="working directory: clips, VAE, latents, checkpoints, logs (resumed from)",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--clips", type=int, default=6000)
    p.add_argument("--vae-steps", type=int, default=6000)
    p.add_argument("--unet-steps", type=int, default=30000)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--lr", type=float, default=4e-4)
    p.add_argument(
        "--high-noise-max",
        type=float,
        default=1.0,
        help="weigh high-noise steps up to this many times more (clip(1/SNR, 1, MAX)); 1 = off",
    )
    p.add_argument(
        "--high-noise-from",
        type=int,
        default=0,
        metavar="STEP",
        help="the UNet step from which --high-noise-max applies",
    )
    p.add_argument(
        "--motion-words-from",
        type=int,
        default=0,
        metavar="STEP",
        help="the UNet step from which captions use whole-word motion tokens (0 = from the start)",
    )
    p.add_argument(
        "--timestep-min",
        type=int,
        default=0,
        metavar="T",
        help="train on timesteps T..999 only (0 = all): the high-noise steps that decide a clip's motion",
    )
    p.add_argument(
        "--direction-weight",
        type=float,
        default=0.0,
        metavar="W",
        help="weight of the ranking term: own motion caption vs the opposite one (0 = off)",
    )
    p.add_argument(
        "--direction-from",
        type=int,
        default=0,
        metavar="STEP",
        help="the UNet step from which --direction-weight applies",
    )
    p.add_argument(
        "--direction-t-min",
        type=int,
        default=500,
        metavar="T",
        help="the ranking term uses clips noised to T..999 only: below about 700 the noisy latents "
        "show the motion themselves (benchmarks/mini_direction_signal.py)",
    )
    p.add_argument("--device", default="auto")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = torch's default)")
    p.add_argument(
        "--export",
        type=Path,
        default=None,
        metavar="DIR",
        help="write the float16 bundle from the latest checkpoint to DIR and exit",
    )
    p.add_argument(
        "--plot",
        type=Path,
        default=None,
        metavar="PNG",
        help="plot the loss curves to PNG and exit",
    )
    args = p.parse_args(argv)
    if not 0 <= args.timestep_min <= 999:
        p.error(
            f"--timestep-min must be within 0..999 (zeroscope's 1,000 timesteps), got {args.timestep_min}"
        )
    if not 0 <= args.direction_t_min <= 999:
        p.error(
            f"--direction-t-min must be within 0..999 (zeroscope's 1,000 timesteps), got {args.direction_t_min}"
        )
    if args.direction_weight < 0:
        p.error(f"--direction-weight must be 0 (off) or positive, got {args.direction_weight}")
    if args.plot is not None:
        print(plot(args.work.expanduser(), args.plot))
        return 0
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    work = args.work.expanduser()
    if args.export is not None:
        print(export(work, args.export, seed=args.seed))
        return 0
    work.mkdir(parents=True, exist_ok=True)
    device = _device(args.device)
    _log(f"training mini in {work} on {device} ({torch.get_num_threads()} threads)")
    videos, captions, contents = clips(work, args.clips, args.seed)
    vae = train_vae(work, videos, steps=args.vae_steps, seed=args.seed, device=device)
    vae.eval().requires_grad_(False)
    latents = cache_latents(work, vae, videos, device)
    del videos
    train_unet(
        work,
        latents,
        captions,
        contents,
        steps=args.unet_steps,
        seed=args.seed,
        device=device,
        batch=args.batch,
        lr=args.lr,
        high_noise_max=args.high_noise_max,
        high_noise_from=args.high_noise_from,
        motion_words_from=args.motion_words_from,
        timestep_min=args.timestep_min,
        direction_weight=args.direction_weight,
        direction_from=args.direction_from,
        direction_t_min=args.direction_t_min,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
