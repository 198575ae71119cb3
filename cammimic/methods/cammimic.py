"""The CamMimic method end to end: Phase 1 (LoRA finetuning) and Phase 2 (guided sampling).

:func:`run_cammimic` is what ``cammimic run`` (``--method cammimic``), ``cammimic finetune``
(Phase 1 only) and ``cammimic sample`` (Phase 2 only, from saved LoRAs) do. Phase 1 is
:func:`cammimic.training.finetune`, Phase 2 :func:`cammimic.sampling.phase2`. Everything it
writes lands in the run directory at once (:func:`cammimic.rundir.write_run`), and records what
produced it.
"""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import attrs
import numpy as np

from cammimic.backbones import (
    check_num_frames,
    fit_num_frames,
    max_frames,
    resolve_recipe,
    resolve_sampler,
    resolve_sampling,
)
from cammimic.candidates import candidate_seeds, choose, sample_candidates, write_candidates
from cammimic.config import Config
from cammimic.errors import CammimicError
from cammimic.io import as_image, check_output_directory, resize_center_crop, sha256, write_video
from cammimic.lora import LoraSpec, inject_loras, load_lora, read_lora, save_lora
from cammimic.methods.homography import Transfer, transfer_homography
from cammimic.motion import MotionEstimate
from cammimic.motion_controls import MotionControls, reference_frames
from cammimic.plugins import PluginHost
from cammimic.reference import Reference, resolve_reference
from cammimic.results import RunResult, ScoreResult
from cammimic.rundir import input_records, provenance, seed_all, write_outputs, write_run
from cammimic.sampling import frame_by_frame, phase2, plan_windows
from cammimic.training import (
    CHECKPOINT_MARKER,
    CHECKPOINT_NAME,
    LOSS_FIELDS,
    FinetuneSettings,
    finetune,
)

__all__ = [
    "run_cammimic",
    "CamMimicResult",
    "PAPER_NUM_FRAMES",
    "prompts",
    "losses_csv",
    "checkpoint_dir_for",
]

#: Frames the paper finetunes and samples (zeroscope's native is 24).
PAPER_NUM_FRAMES = 16


def prompts(config: Config) -> dict[str, str]:
    """t_R (stage 1), t_u (stage 2) and t_I (sampling), as the paper builds them."""
    run = config["run"]
    token = config["lora"]["token"]
    motion = f"camera motion of {token}"
    reference = run["reference_prompt"].strip()
    user = run["prompt"].strip()
    return {
        "reference": f"{reference}, {motion}" if reference else motion,
        "image": user,
        "sampling": f"{user}, {motion}" if user else motion,
    }


def checkpoint_dir_for(output_dir) -> Path:
    """Checkpoints live next to the run directory, so the run directory appears whole or not at all."""
    out = Path(output_dir)
    return out.with_name(out.name + ".checkpoints")


def _check_writable(output_dir) -> None:
    """The run directory and its checkpoints are created next to ``output_dir``: that folder must take files."""
    import tempfile

    out = Path(output_dir).expanduser()
    parent = out.absolute().parent
    while not parent.exists() and parent != parent.parent:  # missing folders are created later
        parent = parent.parent
    try:
        fd, probe = tempfile.mkstemp(prefix=".cammimic-write-test-", dir=parent)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        reason = os.strerror(exc.errno) if exc.errno else str(exc)
        raise CammimicError(
            f"cannot write next to the output directory {out}: {parent} is not a writable folder ({reason}); "
            "choose another --output"
        ) from None


@attrs.frozen(eq=False)
class _Inputs:
    reference: Reference  #: sampled and resized
    image: np.ndarray
    width: int
    height: int
    fps: float


def _read_inputs(reference, image, config: Config, adapter) -> _Inputs:
    run = config["run"]
    width = run["width"] or adapter.default_size[0]
    height = run["height"] or adapter.default_size[1]
    # A camera preset or path file: the stage-1 reference video is the user image moved along it.
    # The backbone may take only some frame counts (Wan: 4k+1): an explicit --frames must be one;
    # the default (the paper's 16) moves to the nearest one the backbone takes (17 for Wan).
    if run["frames"]:
        check_num_frames(adapter, run["frames"])
    picture = as_image(image)  # decoded once, also for a camera path to look at
    # only the frames used are decoded, resized as they come
    ref = resolve_reference(
        reference,
        size=(width, height),
        frames=run["frames"] or (lambda total: fit_num_frames(adapter, PAPER_NUM_FRAMES, total)),
        image=picture,
        image_source=str(image) if isinstance(image, (str, Path)) else None,
    )
    user_image = resize_center_crop(picture, (width, height))[0]
    return _Inputs(
        reference=ref, image=user_image, width=width, height=height, fps=run["fps"] or ref.fps
    )


def _load_backbone(config: Config, host: PluginHost):
    name, params = config.component("backbone")
    where = f" ([backbone]{config.where})" if config.source else ""
    adapter = host.create("backbone", name, params, where=where)
    record = host.component_record("backbone", name) | {"parameters": params}
    return adapter, record


def _noise_initialiser(config: Config, host: PluginHost):
    """The ``[noise]`` initialiser of x_T and its record for run.json."""
    name, params = config.component("noise")
    where = f" ([noise]{config.where})" if config.source else ""
    return host.create("noise", name, params, where=where), host.component_record("noise", name) | {
        "parameters": params
    }


def _guidance_terms(config: Config, host: PluginHost):
    terms, records = [], []
    for i, table in enumerate(config["guidance"]):
        table = dict(table)
        name = table.pop("name")
        where = f" ([[guidance]] #{i + 1}{config.where})"
        terms.append(host.create("guidance", name, table, where=where))
        records.append(host.component_record("guidance", name) | {"parameters": table})
    return terms, records


def losses_csv(losses: list[dict[str, Any]]) -> str:
    """Phase 1's loss rows as the ``losses.csv`` a run writes (columns :data:`~cammimic.training.LOSS_FIELDS`)."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=LOSS_FIELDS, lineterminator="\n")
    writer.writeheader()
    for row in losses:
        writer.writerow({k: ("" if row.get(k) is None else row.get(k)) for k in LOSS_FIELDS})
    return buf.getvalue()


def _check_request(texts: dict[str, str], do_finetune: bool, spatial_lora, temporal_lora) -> None:
    """Refuse a request that cannot work before anything loads: no prompt, missing or damaged LoRAs."""
    if not texts["image"]:
        raise CammimicError(
            'the cammimic method needs --prompt, a description of your image (e.g. "a snowy mountain village")'
        )
    if not do_finetune and not (spatial_lora and temporal_lora):
        raise CammimicError(
            "sampling alone needs both LoRAs: --lora RUN_DIR, or --spatial-lora FILE and --temporal-lora FILE"
        )
    for label, path in (("--spatial-lora", spatial_lora), ("--temporal-lora", temporal_lora)):
        if path is not None and not Path(path).is_file():
            raise CammimicError(
                f"{label} {path} does not exist; give a .safetensors file from a run's lora/ folder"
            )
        if path is not None:
            read_lora(path)  # damaged or non-finite files are refused before any model loads


@attrs.frozen(eq=False)
class CamMimicResult:
    """Everything a CamMimic run produced, in memory: what :func:`_write_files` writes."""

    config: Config  #: as resolved (frames, size and fps filled in), written as config.toml
    backbone: Any  #: the loaded backbone, holding the LoRAs
    ident: dict[str, Any]  #: backbone name, base model and fingerprint, stored with each LoRA file
    lora_meta: dict[str, str]  #: seed and prompts, stored with each LoRA file
    layers: Any  #: cammimic.components.AttentionLayers, written as lora/layers.json
    reference: Reference  #: the frames used
    fps: float
    reference_motion: MotionEstimate
    weak: Transfer  #: the weak (homography) video
    trained: Any = None  #: cammimic.training.FinetuneResult when Phase 1 ran
    lora_sources: dict[str, Any] = attrs.field(
        factory=dict
    )  #: the LoRA files Phase 2 read, else empty
    output_frames: np.ndarray | None = None  #: Phase 2's video
    output_motion: MotionEstimate | None = None
    scored: ScoreResult | None = None
    candidates: tuple = ()  #: cammimic.candidates.Candidate of a best-of-N run (more than one)


def run_cammimic(
    reference,
    image,
    output_dir,
    *,
    config: Config,
    host: PluginHost,
    overwrite: bool = False,
    resume: bool = False,
    progress: bool = True,
    phases: tuple[str, ...] = ("finetune", "sample"),
    spatial_lora: str | Path | None = None,
    temporal_lora: str | Path | None = None,
    allow_other_base: bool = False,
    on_step=None,
) -> RunResult:
    """Run CamMimic's phases and write the run directory.

    ``phases``: ``("finetune", "sample")`` for the whole method, ``("finetune",)`` for Phase 1
    alone, ``("sample",)`` for Phase 2 from ``spatial_lora``/``temporal_lora`` files.
    """
    import torch

    started = time.perf_counter()
    do_finetune, do_sample = "finetune" in phases, "sample" in phases
    run, lora_cfg = config["run"], config["lora"]

    # 1. Check the inputs: the output directory, the prompt, the LoRA files, a writable folder.
    input_paths = (reference, image, config.source, spatial_lora, temporal_lora)
    check_output_directory(output_dir, overwrite=overwrite, inputs=input_paths)
    texts = prompts(config)
    _check_request(texts, do_finetune, spatial_lora, temporal_lora)
    _check_writable(output_dir)

    # 2. Load: the components, the inputs (checked against the backbone's rules), then the backbone.
    adapter, backbone_record = _load_backbone(config, host)
    # the backbone's own recipe (mini: step counts, ranks and estimator measured for its size)
    # where the user set none
    recipe = resolve_recipe(adapter, config)
    if recipe:
        config = config.with_overrides(recipe)
        run, lora_cfg = config["run"], config["lora"]
    # the sampler must be one the backbone offers ("auto": its default), recorded as resolved; so are the
    # backbone's own CFG scale, negative prompt and steps where the user set none
    config = config.with_overrides(
        {
            "sampling.scheduler": resolve_sampler(adapter, config["sampling"]["scheduler"]),
            **resolve_sampling(adapter, config["sampling"]),
        }
    )
    terms, guidance_records = _guidance_terms(config, host) if do_sample else ([], [])
    noise, noise_record = _noise_initialiser(config, host) if do_sample else (None, None)
    est_name, est_params = config.component("motion_estimator")
    estimator = host.create(
        "motion_estimator",
        est_name,
        est_params,
        where=f" ([motion_estimator]{config.where})" if config.source else "",
    )
    inputs = _read_inputs(reference, image, config, adapter)
    # the backbone's own rules (size, frames, steps) before any model loads; what depends on weights
    # not at hand yet (a Hub id not downloaded) is checked by the loaded backbone
    sampling = config["sampling"]
    request = (
        inputs.width,
        inputs.height,
        len(inputs.reference.frames),
        sampling["scheduler"] if do_sample else None,
        sampling["steps"] if do_sample else None,
    )
    checked = adapter.preflight(*request)
    # longer than the backbone samples at once: Phase 2 in overlapping windows (issue 25 §4); the
    # overlap is checked against the window before any model loads
    window = max_frames(adapter)
    if window and do_sample and len(inputs.reference.frames) > window:
        plan_windows(len(inputs.reference.frames), window, config["sampling"]["window_overlap"])
    seed_all(run["seed"], torch=True)
    backbone = adapter.load(
        device=None if run["device"] == "auto" else run["device"],
        torch_dtype=None if run["dtype"] == "auto" else run["dtype"],
    )
    if not checked:
        backbone.preflight(*request)
    model = backbone.denoiser
    layers = host.locate_attention_layers(backbone.name, model, lora_cfg["include_ff"])
    if layers is None:
        raise CammimicError(
            f'no plugin knows where the LoRAs go on backbone "{backbone.name}" ({type(model).__name__}); '
            "install or write a plugin implementing locate_attention_layers (docs/plugins.md)"
        )
    ident = {
        "backbone": backbone.name,
        "base_model": backbone.weights,
        "fingerprint": backbone.fingerprint(),
    }

    # The reference's camera motion (exact for a camera preset or path file) and the weak video.
    ref = inputs.reference
    ref_motion = ref.camera_motion(estimator)
    # [motion] strength, speed, reverse, smooth; a retimed length moves to one the backbone takes
    ref_motion = MotionControls.from_config(config).apply(
        ref_motion, fit_frames=lambda n: fit_num_frames(adapter, n, 10**6)
    )
    weak = transfer_homography(inputs.image, ref_motion, fill=config["homography"]["fill"])
    if (
        window and do_sample and len(weak.frames) > window
    ):  # retimed longer (--motion-speed): checked before Phase 1
        plan_windows(len(weak.frames), window, config["sampling"]["window_overlap"])

    # 3. Phase 1: finetune the spatial and temporal LoRAs, or load them from files. A reference
    # longer than the backbone's clip is learnt from its first window's worth of frames.
    alpha = lora_cfg["alpha"] or None
    learnt = ref.frames[:window] if window else ref.frames
    trained, lora_sources = None, {}
    if do_finetune:
        dropout = lora_cfg["dropout"]
        inject_loras(
            model,
            layers,
            LoraSpec(rank=lora_cfg["spatial_rank"], alpha=alpha, dropout=dropout),
            LoraSpec(rank=lora_cfg["temporal_rank"], alpha=alpha, dropout=dropout),
            init_seed=int(run["seed"]),
        )
        embeds = backbone.encode_prompt([texts["reference"], texts["image"]])
        # an image-to-video backbone learns the reference's motion given its own first frame
        with backbone.conditioned_on(learnt[0]):
            trained = finetune(
                backbone,
                layers,
                reference_latents=backbone.encode_video(learnt),
                reference_embeds=embeds[:1],
                image_latents=backbone.encode_video(inputs.image[None]),
                image_embeds=embeds[1:],
                # a VAE that compresses time: the spatial LoRA's frames are encoded one by one (images)
                reference_frame_latents=backbone.encode_frames(learnt),
                settings=FinetuneSettings.from_config(config),
                checkpoint_dir=checkpoint_dir_for(output_dir),
                resume=resume,
                progress=progress,
                on_step=on_step,
            )
    else:
        for adapter_name, path in (("spatial", spatial_lora), ("temporal", temporal_lora)):
            meta = load_lora(path, model, adapter_name, allow_other_base=allow_other_base, **ident)
            lora_sources[adapter_name] = {
                "path": str(path),
                "sha256": sha256(path),
                "metadata": meta,
            }

    # 4. Phase 2: sample guided by the weak video, then score the result against the reference.
    # Best of N ([run] candidates): N seeds after the one Phase 1, the lowest valid CameraScore kept.
    output_frames = out_motion = scored = None
    candidates: list = []
    if do_sample:

        def sample_seed(seed: int):
            return phase2(
                backbone,
                weak,
                texts["sampling"],
                settings=config["sampling"],
                seed=seed,
                guidance_terms=terms,
                progress=progress,
                noise=noise,
                reference=ref.frames,
                reference_prompt=texts["reference"],
                max_frames=window,
            )

        candidates = sample_candidates(
            sample_seed,
            candidate_seeds(run["seed"], run["candidates"]),
            estimator=estimator,
            reference_motion=ref_motion,
            image=inputs.image,
            weak=weak,
            variant=config["score"]["variant"],
            max_fallback_share=config["score"]["max_fallback_share"],
            guidance_terms=terms,
        )
        kept = candidates[choose(candidates)]
        output_frames, out_motion, scored = kept.frames, kept.motion, kept.scored
        # what a term reported (camerascore: per step) while it sampled the kept candidate
        for record, history in zip(guidance_records, kept.guidance_history):
            if history:
                record["history"] = history

    # 5. Write the run directory.
    result = CamMimicResult(
        config=config.with_overrides(
            {
                "run.frames": len(ref.frames),
                "run.width": inputs.width,
                "run.height": inputs.height,
                "run.fps": float(inputs.fps),
            }
        ),
        backbone=backbone,
        ident=ident,
        layers=layers,
        reference=ref,
        fps=inputs.fps,
        reference_motion=ref_motion,
        weak=weak,
        trained=trained,
        lora_sources=lora_sources,
        output_frames=output_frames,
        output_motion=out_motion,
        scored=scored,
        candidates=tuple(candidates) if len(candidates) > 1 else (),
        lora_meta={
            "seed": str(run["seed"]),
            "reference_prompt": texts["reference"],
            "image_prompt": texts["image"],
        },
    )
    manifest: dict[str, Any] = {
        **provenance(
            "cammimic",
            phases=phases,
            torch=torch.__version__,
            device=str(backbone.device),
            dtype=str(backbone.dtype).replace("torch.", ""),
        ),
        "seed": run["seed"],
        "width": inputs.width,
        "height": inputs.height,
        "num_frames": len(ref.frames),
        "fps": inputs.fps,
        "prompts": texts,
        # what sampling used, the backbone's defaults filled in where the user set none (issue 22 §3)
        **(
            {
                "sampling": {
                    k: config["sampling"][k]
                    for k in ("scheduler", "steps", "guidance_scale", "negative_prompt")
                }
            }
            if do_sample
            else {}
        ),
        **input_records(ref, image),
        "components": {
            "backbone": backbone_record
            | {"weights": backbone.weights, "fingerprint": ident["fingerprint"]},
            "motion_estimator": host.component_record("motion_estimator", est_name),
            "guidance": guidance_records,
            **({"noise": noise_record | _noise_diagnostics(noise)} if noise_record else {}),
        },
        "layers": {
            "spatial": len(layers.spatial),
            "temporal": len(layers.temporal),
            "pairs": len(layers.pairs),
            "file": "lora/layers.json",
            "located_by": getattr(host, "located_by", {}).get(backbone.name),
        },
        "fallbacks": [f.to_json() for f in ref_motion.fallbacks],
        "valid_fraction": [float(m.mean()) for m in weak.masks],
    }
    if (
        do_sample and window and len(weak.frames) > window
    ):  # the windows Phase 2 sampled and blended
        overlap = config["sampling"]["window_overlap"]
        manifest["windows"] = {
            "max_frames": window,
            "overlap": overlap or max(1, window // 4),
            "blend": "latents" if frame_by_frame(backbone, window) else "decoded frames",
            "windows": [
                {"start": a, "end": b} for a, b in plan_windows(len(weak.frames), window, overlap)
            ],
        }
        if trained is not None:
            manifest["windows"]["finetuned_on_frames"] = [0, min(window, len(ref.frames))]
    if trained is not None:
        manifest["finetune"] = _finetune_record(trained)
    if lora_sources:
        manifest["lora_sources"] = lora_sources
    if scored is not None:
        manifest.update(scored.manifest_fields())
    if result.candidates:
        manifest["candidates"] = [c.to_json(kept=c.scored is scored) for c in result.candidates]
        manifest["kept_seed"] = next(c.seed for c in result.candidates if c.scored is scored)
    out = write_run(
        output_dir,
        lambda tmp: _write_files(tmp, result),
        manifest,
        started=started,
        overwrite=overwrite,
        inputs=input_paths,
        camera_score=scored.score if scored else float("nan"),
    )
    if do_finetune:
        _remove_checkpoints(checkpoint_dir_for(output_dir))
    return out


def _noise_diagnostics(noise) -> dict[str, Any]:
    """What an initialiser reports about its last draw (``warped-noise``: the share of each latent
    frame that came from frame 0's moved noise)."""
    coverage = getattr(noise, "coverage", None)
    return {"coverage": [round(float(c), 4) for c in coverage]} if coverage else {}


def _finetune_record(trained) -> dict[str, Any]:
    last = {st: [r for r in trained.losses if r["stage"] == st] for st in (1, 2)}
    return {
        "steps": {"stage1": len(last[1]), "stage2": len(last[2])},
        "resumed_from": trained.resumed_from,
        "seconds": round(trained.seconds, 3),
        "seconds_per_step": trained.seconds_per_step,
        "precision": trained.precision,
        "skipped_steps": trained.skipped_steps,
        "temporal_lora_unchanged_in_stage2": trained.temporal_unchanged_in_stage2,
        "final": {f"stage{st}": rows[-1] for st, rows in last.items() if rows},
    }


def _remove_checkpoints(folder: Path) -> None:
    """After a successful run: remove the checkpoint folder if cammimic made it, else only its checkpoint."""
    if (folder / CHECKPOINT_MARKER).is_file():
        shutil.rmtree(folder, ignore_errors=True)
    elif folder.is_dir():
        (folder / CHECKPOINT_NAME).unlink(missing_ok=True)
        print(
            f"note: left {folder} in place (cammimic did not create it); its checkpoint was removed",
            file=sys.stderr,
        )


def _write_files(tmp: Path, result: CamMimicResult) -> dict[str, Path]:
    """The method's files: the LoRAs (trained, or copies of those read), ``lora/layers.json``,
    ``losses.csv`` after Phase 1, ``weak.mp4``, then the files every run writes
    (:func:`cammimic.rundir.write_outputs`; the side by side is reference | weak | output)."""
    files: dict[str, Path] = {}
    lora_dir = tmp / "lora"
    lora_dir.mkdir()
    if result.trained is not None:
        for name in ("spatial", "temporal"):
            files[f"{name}_lora"] = save_lora(
                lora_dir / f"{name}.safetensors",
                result.backbone.denoiser,
                name,
                extra=result.lora_meta,
                **result.ident,
            )
        (tmp / "losses.csv").write_text(losses_csv(result.trained.losses), encoding="utf-8")
        files["losses"] = tmp / "losses.csv"
    else:
        for name, src in result.lora_sources.items():
            dst = lora_dir / f"{name}.safetensors"
            shutil.copyfile(src["path"], dst)
            files[f"{name}_lora"] = dst
    (lora_dir / "layers.json").write_text(
        json.dumps(result.layers.to_json(), indent=2) + "\n", encoding="utf-8"
    )
    files["layers"] = lora_dir / "layers.json"
    files["weak"] = write_video(
        tmp / "weak.mp4", result.weak.frames, result.fps, crf=result.config["output"]["crf"]
    )
    files |= write_candidates(
        tmp, result.candidates, result.fps, crf=result.config["output"]["crf"]
    )
    motions = {"reference": result.reference_motion}
    if result.output_frames is not None:
        motions["output"] = result.output_motion
    files |= write_outputs(
        tmp,
        config=result.config,
        fps=result.fps,
        motions=motions,
        output_frames=result.output_frames,
        side_by_side=[
            reference_frames(result.reference.frames, result.reference_motion),
            result.weak.frames,
            result.output_frames,
        ],
        scored=result.scored,
    )
    return files
