"""Speed and peak memory of the CamMimic method on a real-size backbone architecture.

Builds zeroscope_v2_576w's UNet3D (1.41 B parameters), VAE and text encoder — or, with
``--backbone wan``, Wan 2.1 T2V 1.3B's transformer (1.42 B), VAE and scheduler
(``cammimic_wan.random_weights`` preset ``1.3b``) — with random weights (nothing is downloaded),
then times a few steps of stage 1, stage 2 and sampling through the same code a run uses
(``cammimic.training.finetune``, ``cammimic.sampling.sample``), and extrapolates the whole run at
the paper's defaults (150 + 150 training steps, 50 sampling steps).

    python benchmarks/method.py                                  # 576x320x16 on the GPU
    python benchmarks/method.py --device cpu --width 128 --height 64 --frames 4 --steps 2
    python benchmarks/method.py --backbone wan                   # 832x480x81 on the GPU
    python benchmarks/method.py --backbone wan --device cpu --width 128 --height 64 --frames 5 --steps 1
    python benchmarks/method.py ... --record                     # also write docs/benchmarks.md

Random weights change no timing: the same tensors flow through the same layers.
"""

from __future__ import annotations

import argparse
import platform
import resource
import time
from pathlib import Path

import numpy as np
import torch

DOC = Path(__file__).resolve().parents[1] / "docs" / "benchmarks.md"
BEGIN, END = "<!-- method:begin -->", "<!-- method:end -->"
#: each backbone's table has its own markers in docs/benchmarks.md
MARKERS = {
    "zeroscope": (BEGIN, END),
    "wan": ("<!-- method-wan:begin -->", "<!-- method-wan:end -->"),
}


def peak_memory(device) -> float:
    """Peak memory in GiB: CUDA allocations on a GPU, the process's peak RSS on a CPU."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**30
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux


def reset_peak(device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)


def sync(device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def build(preset, device, dtype, vae_batch_size):
    from cammimic_unet3d.backbone import UNet3DBackbone
    from cammimic_unet3d.random_weights import SCHEDULER_CONFIG, build_components
    from diffusers.models.attention_processor import AttnProcessor2_0

    from cammimic.kit import resolve_dtype

    c = build_components(preset)
    dtype = resolve_dtype(dtype, device)
    vae_dtype = torch.float32  # as the loader: the VAE stays float32 under a half-precision UNet
    unet = c["unet"].to(device, dtype).requires_grad_(False)
    vae = c["vae"].to(device, vae_dtype).requires_grad_(False)
    text_encoder = c["text_encoder"].to(device, dtype).requires_grad_(False)
    unet.set_attn_processor(AttnProcessor2_0())
    vae.set_attn_processor(AttnProcessor2_0())
    return UNet3DBackbone(
        name="zeroscope",
        weights=f"random:{preset}",
        device=device,
        dtype=dtype,
        denoiser=unet,
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=c["tokenizer"],
        scheduler_config=dict(SCHEDULER_CONFIG),
        vae_scale_factor=2 ** (len(vae.config.block_out_channels) - 1),
        latent_channels=vae.config.latent_channels,
        vae_batch_size=vae_batch_size,
    )


def build_wan(preset, device, dtype):
    from cammimic_wan.backbone import WanBackbone
    from cammimic_wan.random_weights import SCHEDULER_CONFIG, build_components

    from cammimic.kit import resolve_dtype

    c = build_components(preset)
    dtype = resolve_dtype(dtype, device)
    transformer = c["transformer"].to(device, dtype).requires_grad_(False)
    # as from_pretrained(torch_dtype=...) does: Wan's norms, RoPE and time embedding stay float32
    keep = set(getattr(transformer, "_keep_in_fp32_modules", None) or ())
    for name, tensor in [*transformer.named_parameters(), *transformer.named_buffers()]:
        if keep & set(name.split(".")):
            tensor.data = tensor.data.float()
    vae = (
        c["vae"].to(device, torch.float32).requires_grad_(False)
    )  # as the loader: the VAE stays float32
    text_encoder = c["text_encoder"].to(device, dtype).requires_grad_(False)
    return WanBackbone(
        name="wan",
        weights=f"random:{preset}",
        device=device,
        dtype=dtype,
        denoiser=transformer,
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=c["tokenizer"],
        scheduler_config=dict(SCHEDULER_CONFIG),
        latent_channels=int(vae.config.z_dim),
        patch_size=tuple(transformer.config.patch_size),
        training_shift=float(SCHEDULER_CONFIG["flow_shift"]),
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--backbone", default="zeroscope", choices=["zeroscope", "wan"])
    parser.add_argument(
        "--preset",
        default=None,
        help="zeroscope: zeroscope (default) or tiny; wan: 1.3b (default) or tiny",
    )
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dtype", default="auto")
    parser.add_argument(
        "--width", type=int, default=None, help="default: 576 (zeroscope), 832 (wan)"
    )
    parser.add_argument(
        "--height", type=int, default=None, help="default: 320 (zeroscope), 480 (wan)"
    )
    parser.add_argument(
        "--frames",
        type=int,
        default=None,
        help="default: 16 (the paper's; zeroscope), 81 (wan: 4k+1)",
    )
    parser.add_argument(
        "--steps", type=int, default=5, help="timed steps per phase (after one warm-up step)"
    )
    parser.add_argument("--rank", type=int, default=32)
    parser.add_argument("--gradient-checkpointing", action="store_true")
    parser.add_argument("--vae-batch-size", type=int, default=8)
    parser.add_argument(
        "--record", action="store_true", help="write the table into docs/benchmarks.md"
    )
    args = parser.parse_args()
    wan = args.backbone == "wan"
    args.preset = args.preset or ("1.3b" if wan else "zeroscope")
    args.width = args.width or (832 if wan else 576)
    args.height = args.height or (480 if wan else 320)
    args.frames = args.frames or (81 if wan else 16)

    from cammimic_unet3d.locator import locate_unet3d_layers
    from cammimic_wan.locator import locate_wan_layers

    from cammimic.backbones import check_num_frames
    from cammimic.lora import LoraSpec, inject_loras
    from cammimic.sampling import sample
    from cammimic.training import FinetuneSettings, finetune

    device = torch.device(args.device)
    wall = time.perf_counter()
    t0 = time.perf_counter()
    backbone = (
        build_wan(args.preset, device, args.dtype)
        if wan
        else build(args.preset, device, args.dtype, args.vae_batch_size)
    )
    check_num_frames(backbone, args.frames)
    build_s = time.perf_counter() - t0
    params = sum(p.numel() for p in backbone.denoiser.parameters()) / 1e9
    locate = locate_wan_layers if wan else locate_unet3d_layers
    layers = locate(backbone.denoiser, include_ff=False)
    inject_loras(backbone.denoiser, layers, LoraSpec(args.rank), LoraSpec(args.rank), init_seed=0)

    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, (args.frames, args.height, args.width, 3), dtype=np.uint8)
    reset_peak(device)
    t0 = time.perf_counter()
    ref_latents = backbone.encode_video(frames)
    img_latents = backbone.encode_video(frames[:1])
    embeds = backbone.encode_prompt(["a rocket launch, camera motion of sks", "a village", ""])
    # Wan's VAE compresses time: the spatial LoRA's single frames are encoded one by one
    frame_latents = backbone.encode_frames(frames) if wan else None
    sync(device)
    encode_s = time.perf_counter() - t0

    n = args.steps + 1  # the first step of each stage is a warm-up
    marks: dict[int, list[float]] = {1: [], 2: []}
    peaks: dict[str, float] = {}

    def on_step(record):
        sync(device)
        marks[record["stage"]].append(time.perf_counter())
        if record["stage"] == 1 and record["step"] == n:
            peaks["stage 1"] = peak_memory(device)
            reset_peak(device)

    settings = FinetuneSettings(
        stage1_steps=n,
        stage2_steps=n,
        checkpoint_every=0,
        gradient_checkpointing=args.gradient_checkpointing,
    )
    reset_peak(device)
    finetune(
        backbone,
        layers,
        reference_latents=ref_latents,
        reference_embeds=embeds[:1],
        image_latents=img_latents,
        image_embeds=embeds[1:2],
        reference_frame_latents=frame_latents,
        settings=settings,
        progress=False,
        on_step=on_step,
    )
    peaks["stage 2"] = peak_memory(device)
    per_step = {f"stage {s}": float(np.mean(np.diff(marks[s]))) for s in (1, 2)}

    reset_peak(device)
    ticks: list[float] = []
    target = backbone.encode_video(frames)
    sample(
        backbone,
        "a village, camera motion of sks",
        num_frames=args.frames,
        width=args.width,
        height=args.height,
        steps=n,
        guidance_scale=5.0 if wan else 9.0,
        seed=0,
        target=target,
        progress=False,
        callback=lambda i, t, z: (sync(device), ticks.append(time.perf_counter())),
    )
    per_step["sampling"] = float(np.mean(np.diff(ticks)))
    t0 = time.perf_counter()
    backbone.decode_latents(target)
    sync(device)
    decode_s = time.perf_counter() - t0
    peaks["sampling"] = peak_memory(device)
    measured_wall = time.perf_counter() - wall

    run_estimate = (
        150 * per_step["stage 1"]
        + 150 * per_step["stage 2"]
        + 50 * per_step["sampling"]
        + encode_s
        + decode_s
    )
    if device.type == "cuda":
        where = f"{torch.cuda.get_device_name(device)}, {str(backbone.dtype).replace('torch.', '')}"
    else:
        where = f"CPU ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads), {str(backbone.dtype).replace('torch.', '')}"
    size = f"{args.width}x{args.height}x{args.frames}"
    if wan:
        size += f" (latents {'x'.join(str(v) for v in tuple(ref_latents.shape[2:]))})"
    model = "WanTransformer3DModel" if wan else "UNet3D"
    lines = [
        f"Setup: {where}; preset `{args.preset}` ({model} {params * 1000:.1f} M parameters, random weights); {size}; "
        f"LoRA rank {args.rank}; gradient checkpointing {'on' if args.gradient_checkpointing else 'off'}; "
        f"mean of {args.steps} steps after one warm-up; torch {torch.__version__}.",
        "",
        "| Phase | Time per step | Peak memory |",
        "|---|---|---|",
    ]
    mem_label = "GiB allocated" if device.type == "cuda" else "GiB RSS (process, cumulative)"
    for phase in ("stage 1", "stage 2", "sampling"):
        lines.append(f"| {phase} | {per_step[phase]:.3f} s | {peaks[phase]:.2f} {mem_label} |")
    lines += [
        "",
        f"VAE encode of the reference + image and prompt encoding: {encode_s:.2f} s; decode: {decode_s:.2f} s; "
        f"building the random models: {build_s:.1f} s; this benchmark's wall time: {measured_wall:.0f} s.",
        f"Whole run at the defaults (150 + 150 training steps, 50 sampling steps with CFG), from these figures: "
        f"**{run_estimate / 60:.1f} min**.",
    ]
    table = "\n".join(lines)
    print(table)
    if args.record:
        text = DOC.read_text(encoding="utf-8")
        begin, end = MARKERS[args.backbone]
        block = f"{begin}\n{table}\n{end}"
        if begin in text:
            text = text[: text.index(begin)] + block + text[text.index(end) + len(end) :]
        else:
            title = "The CamMimic method on Wan 2.1" if wan else "The CamMimic method"
            text = text.rstrip("\n") + f"\n\n## {title}\n\n" + block + "\n"
        DOC.write_text(text, encoding="utf-8")
        print(f"recorded in {DOC}")


if __name__ == "__main__":
    main()
