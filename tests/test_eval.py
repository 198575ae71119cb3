"""`cammimic eval`: manifest errors, every method on tiny weights, metrics on tiny models, resume, failures, Ray."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from conftest import clip, photo

import cammimic
from cammimic.cli import main
from cammimic.errors import CammimicError
from cammimic.eval import evaluate, read_manifest
from cammimic.io import write_image, write_video

# 2 finetune steps per stage, 2 sampling steps, 8 frames at 64x64, rank-4 LoRAs.
FAST = {
    "run.frames": 8,
    "run.width": 64,
    "run.height": 64,
    "finetune.stage1_steps": 2,
    "finetune.stage2_steps": 2,
    "sampling.steps": 2,
    "lora.spatial_rank": 4,
    "lora.temporal_rank": 4,
}


def photo_pairs(folder: Path, n: int, size: int = 64) -> Path:
    """n (reference, image) pairs of real photographs under known camera moves, and a CSV manifest."""
    import cv2

    moves = [
        ("pan", "astronaut", "coffee"),
        ("zoom", "chelsea", "rocket"),
        ("roll", "coffee", "astronaut"),
        ("tilt", "rocket", "chelsea"),
    ]
    rows = ["id,reference,image,prompt,reference_prompt"]
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        kind, a, b = moves[i % len(moves)]
        frames, _ = clip(
            kind, size, size, frames=8, name=a, magnitude=1.0 + 0.1 * (i // len(moves))
        )
        write_video(folder / f"ref{i}.mp4", frames, 8.0)
        write_image(
            folder / f"img{i}.png", cv2.resize(photo(b), (size, size), interpolation=cv2.INTER_AREA)
        )
        rows.append(f"p{i},ref{i}.mp4,img{i}.png,a photo of {b},{a}")
    (folder / "m.csv").write_text("\n".join(rows) + "\n")
    return folder / "m.csv"


@pytest.fixture(scope="module")
def manifest(tmp_path_factory):
    return photo_pairs(tmp_path_factory.mktemp("pairs"), 3)


def _config(**extra):
    from cammimic.config import load_config

    return load_config().with_overrides(extra)


def _subset(manifest: Path, folder: Path, n: int) -> Path:
    """The first n items of ``manifest`` in a new manifest in ``folder`` (absolute paths)."""
    lines = manifest.read_text().splitlines()
    d = manifest.parent
    body = [ln.replace(",ref", f",{d}/ref").replace(",img", f",{d}/img") for ln in lines[1 : n + 1]]
    (folder / "sub.csv").write_text("\n".join([lines[0], *body]) + "\n")
    return folder / "sub.csv"


def _rows(out: Path) -> list[dict]:
    with open(out / "results.csv", newline="") as f:
        return list(csv.DictReader(f))


# -- manifest -----------------------------------------------------------------------------------
def test_manifest_errors_are_reported_all_at_once(tmp_path, manifest):
    base = manifest.parent
    (tmp_path / "ok.png").write_bytes((base / "img0.png").read_bytes())
    text = (
        "id,reference,image,prompt,reference_prompt\n"
        f"a,{base}/ref0.mp4,ok.png,a cup,an astronaut\n"  # fine (relative image)
        f"b,{base}/missing.mp4,ok.png,a cup,x\n"  # missing reference
        f"a,{base}/ref0.mp4,ok.png,,x\n"  # duplicate id and empty prompt
        f"c d,{base}/ref0.mp4,ok.png,p,x\n"
    )  # bad id
    (tmp_path / "m.csv").write_text(text)
    with pytest.raises(CammimicError) as err:
        read_manifest(tmp_path / "m.csv")
    lines = str(err.value).splitlines()
    assert lines[0] == f"manifest {tmp_path / 'm.csv'} has 4 problem(s); fix them and run again:"
    assert lines[1:] == [
        f"  m.csv row 2, column reference: {base}/missing.mp4 does not exist (relative paths are relative to {tmp_path})",
        "  m.csv row 3, column prompt: missing or empty",
        "  m.csv row 3, column id: 'a' is also the id of row 1; ids must be unique",
        "  m.csv row 4, column id: 'c d' must be letters, digits, '.', '_' or '-' (it names a folder)",
    ]
    # JSONL: relative paths, default id = row number, a broken line named
    (tmp_path / "m.jsonl").write_text(
        json.dumps(
            {
                "reference": f"{base}/ref0.mp4",
                "image": "ok.png",
                "prompt": "p",
                "reference_prompt": "r",
            }
        )
        + "\n{oops\n"
    )
    with pytest.raises(CammimicError, match=r"m.jsonl row 2: not valid JSON"):
        read_manifest(tmp_path / "m.jsonl")
    (tmp_path / "m.jsonl").write_text(
        json.dumps(
            {
                "reference": f"{base}/ref0.mp4",
                "image": "ok.png",
                "prompt": "p",
                "reference_prompt": "r",
            }
        )
        + "\n"
    )
    [item] = read_manifest(tmp_path / "m.jsonl")
    assert item.id == "1" and item.image == str(tmp_path / "ok.png")
    (tmp_path / "h.csv").write_text("reference,image,text\n")
    with pytest.raises(CammimicError, match="has no column prompt, reference_prompt"):
        read_manifest(tmp_path / "h.csv")


def test_cli_reports_manifest_errors_in_one_message_and_writes_nothing(tmp_path, capsys):
    (tmp_path / "m.csv").write_text(
        "id,reference,image,prompt,reference_prompt\nx,nope.mp4,nope.png,p,r\n"
    )
    code = main(
        ["eval", str(tmp_path / "m.csv"), "-o", str(tmp_path / "out"), "--methods", "homography"]
    )
    err = capsys.readouterr().err
    assert code == 1 and "row 1, column reference: nope.mp4 does not exist" in err
    assert "row 1, column image: nope.png does not exist" in err and "Traceback" not in err
    assert not (tmp_path / "out").exists()


# -- the homography method: outputs, resume, failures, configs ------------------------------------
def test_eval_writes_results_summary_plot_report_and_resumes(tmp_path, manifest, capsys):
    out = tmp_path / "ev"
    code = main(
        ["eval", str(manifest), "-o", str(out), "--methods", "homography", "--seed", "3", "-q"]
    )
    assert code == 0, capsys.readouterr().err
    rows = _rows(out)
    assert [(r["id"], r["method"], r["status"]) for r in rows] == [
        (f"p{i}", "homography", "ok") for i in range(3)
    ]
    for r in rows:
        # the homography method reproduces the reference's camera motion: valid, tiny CameraScore
        assert (
            r["valid"] == "True"
            and float(r["camera_score"]) < 1e-4
            and r["output_fallbacks"] == "0"
        )
        assert float(r["ssim_first"]) > 0.85 and float(r["psnr_in_view"]) > 25
    with open(out / "summary.csv", newline="") as f:
        [s] = list(csv.DictReader(f))
    assert (s["method"], s["n"], s["n_valid"], s["n_failed"]) == ("homography", "3", "3", "0")
    assert float(s["camera_score_lo"]) <= float(s["camera_score"]) <= float(s["camera_score_hi"])
    assert (out / "tradeoff.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    report = (out / "report.html").read_text()
    assert (
        "runs/p2/homography/output.mp4" in report and "../" in report
    )  # reference videos, relative
    assert {p.name for p in (out / "runs" / "p0" / "homography").iterdir()} >= {
        "output.mp4",
        "score.json",
        "motion.json",
        "config.toml",
        "run.json",
    }
    record = json.loads((out / "eval.json").read_text())
    assert record["manifest"]["items"] == 3 and len(record["manifest"]["sha256"]) == 64
    assert (
        record["config"]["run"]["seed"] == 3
        and record["plugins"]["eval_method"]["homography"]["plugin"] == "eval"
    )

    before = (out / "pairs" / "p1" / "homography.json").read_text()
    code = main(
        ["eval", str(manifest), "-o", str(out), "--methods", "homography", "--seed", "3", "-q"]
    )
    captured = capsys.readouterr()
    assert (
        code == 0
        and "resuming: skipping 3 finished (item, method) pair(s); 0 to run" in captured.err
    )
    assert (out / "pairs" / "p1" / "homography.json").read_text() == before

    # another config in the same directory is refused: results of two configs never mix
    code = main(
        ["eval", str(manifest), "-o", str(out), "--methods", "homography", "--seed", "4", "-q"]
    )
    err = capsys.readouterr().err
    assert code == 1 and "holds results of a different evaluation" in err


def test_a_failing_item_is_recorded_and_redone_on_resume(tmp_path, manifest, capsys):
    m = tmp_path / "m.csv"
    base = manifest.parent
    (tmp_path / "broken.mp4").write_bytes(b"not a video")
    m.write_text(
        "id,reference,image,prompt,reference_prompt\n"
        f"good,{base}/ref0.mp4,{base}/img0.png,a cup,an astronaut\n"
        f"bad,broken.mp4,{base}/img1.png,a rocket,a cat\n"
    )
    out = tmp_path / "ev"
    code = main(["eval", str(m), "-o", str(out), "--methods", "homography", "-q"])
    captured = capsys.readouterr()
    assert code == 1 and "1 (item, method) pair(s) failed" in captured.err
    assert "failed: item bad method homography: video" in captured.err
    rows = {r["id"]: r for r in _rows(out)}
    assert rows["good"]["status"] == "ok" and rows["bad"]["status"] == "failed"
    assert "\n" not in rows["bad"]["error"] and rows["bad"]["error"].startswith(
        f"video {tmp_path / 'broken.mp4'}"
    )
    # fix the input, run again: only the failed pair runs
    (tmp_path / "broken.mp4").write_bytes((base / "ref1.mp4").read_bytes())
    code = main(["eval", str(m), "-o", str(out), "--methods", "homography", "-q"])
    assert (
        code == 0
        and "skipping 1 finished (item, method) pair(s); 1 to run" in capsys.readouterr().err
    )
    assert {r["id"]: r["status"] for r in _rows(out)} == {"good": "ok", "bad": "ok"}


def test_invalid_scores_are_counted_not_averaged(tmp_path, manifest, capsys):
    """A textureless reference: its CameraScore is invalid; the summary counts it and leaves it out."""
    m = tmp_path / "m.csv"
    base = manifest.parent
    write_video(tmp_path / "flat.mp4", np.full((8, 64, 64, 3), 120, np.uint8), 8.0)
    m.write_text(
        "id,reference,image,prompt,reference_prompt\n"
        f"good,{base}/ref0.mp4,{base}/img0.png,a cup,an astronaut\n"
        f"flat,flat.mp4,{base}/img1.png,a rocket,grey\n"
    )
    out = tmp_path / "ev"
    assert main(["eval", str(m), "-o", str(out), "--methods", "homography", "-q"]) == 0
    rows = {r["id"]: r for r in _rows(out)}
    assert rows["flat"]["valid"] == "False" and rows["flat"]["camera_score"] == ""
    with open(out / "summary.csv", newline="") as f:
        [s] = list(csv.DictReader(f))
    assert (s["n_valid"], s["n_invalid"]) == ("1", "1")
    assert float(s["camera_score"]) == pytest.approx(float(rows["good"]["camera_score"]))
    assert (
        "CameraScore invalid (0 output / 7 reference fallbacks of 7)"
        in (out / "report.html").read_text()
    )


# -- a third-party method through the hook ----------------------------------------------------
def test_a_plugin_registers_an_eval_method(tmp_path, manifest, plugin_host):
    """register_eval_methods: a third-party method (here: a still camera) runs like the built-in ones."""

    class Still:
        name = "still"
        uses_backbone = False  # a homography run: frames and size stay its own

        def run(self, item, output_dir, *, config, host):
            from cammimic.api import transfer
            from cammimic.io import read_video

            frames = read_video(item.reference).frames
            frozen = np.repeat(
                frames[:1], len(frames), axis=0
            )  # a reference whose camera never moves
            transfer(frozen, item.image, output_dir, config=config, method="homography", host=host)

    class StillPlugin:
        @cammimic.hookimpl
        def register_eval_methods(self, register):
            register("still", Still, description="the user image, not moving")

    plugin_host.register(StillPlugin(), name="still-plugin")
    res = evaluate(
        manifest,
        tmp_path / "ev",
        methods="homography,still",
        config=_config(),
        progress=False,
        host=plugin_host,
        echo=lambda s: None,
    )
    rows = {(r["id"], r["method"]): r for r in _rows(tmp_path / "ev")}
    assert res["failed"] == 0, [r["error"] for r in rows.values()]
    assert (res["ran"], res["skipped"]) == (6, 0)
    rows = {(r["id"], r["method"]): r for r in _rows(tmp_path / "ev")}
    for i in range(3):
        # a still output against a still "reference" scores ~0, the real reference is followed by homography
        assert float(rows[(f"p{i}", "homography")]["psnr_in_view"]) > float(
            rows[(f"p{i}", "still")]["psnr_in_view"]
        )
    with pytest.raises(
        CammimicError, match='eval method "stil" .* is unknown \\(did you mean "still"\\?\\)'
    ):
        evaluate(
            manifest,
            tmp_path / "ev2",
            methods="stil",
            config=_config(),
            host=plugin_host,
            progress=False,
        )
    assert not (tmp_path / "ev2").exists()


# -- metrics --------------------------------------------------------------------------------------
def test_ssim_matches_scikit_image():
    from cammimic_eval.metrics import ssim
    from skimage.metrics import structural_similarity

    a = clip("pan", 64, 48, frames=2)[0]
    ref = structural_similarity(
        a[0],
        a[1],
        gaussian_weights=True,
        sigma=1.5,
        use_sample_covariance=False,
        data_range=255,
        channel_axis=-1,
    )
    assert ssim(a[0], a[1]) == pytest.approx(ref, abs=1e-9)
    assert ssim(a[0], a[0]) == pytest.approx(1.0)


@pytest.fixture(scope="module")
def tiny_metric_weights(tmp_path_factory):
    """Tiny random DINOv2 and CLIP models saved in their Hub layout (offline)."""
    import torch
    from cammimic_unet3d.random_weights import build_tokenizer
    from transformers import (
        BitImageProcessor,
        CLIPConfig,
        CLIPImageProcessor,
        CLIPModel,
        Dinov2Config,
        Dinov2Model,
    )

    root = tmp_path_factory.mktemp("metric-weights")
    torch.manual_seed(0)
    dino = Dinov2Model(
        Dinov2Config(
            hidden_size=32,
            num_hidden_layers=2,
            num_attention_heads=2,
            intermediate_size=64,
            image_size=56,
            patch_size=14,
        )
    )
    dino.save_pretrained(root / "dinov2")
    BitImageProcessor(
        size={"shortest_edge": 64},
        crop_size={"height": 56, "width": 56},
        image_mean=[0.485, 0.456, 0.406],
        image_std=[0.229, 0.224, 0.225],
    ).save_pretrained(root / "dinov2")
    torch.manual_seed(0)
    cfg = CLIPConfig(
        text_config={
            "hidden_size": 32,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "intermediate_size": 64,
            "vocab_size": 1000,
            "max_position_embeddings": 77,
        },
        vision_config={
            "hidden_size": 32,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "intermediate_size": 64,
            "image_size": 32,
            "patch_size": 8,
        },
        projection_dim=16,
    )
    CLIPModel(cfg).save_pretrained(root / "clip")
    CLIPImageProcessor(
        size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}
    ).save_pretrained(root / "clip")
    build_tokenizer().save_pretrained(root / "clip")
    from transformers import VideoMAEImageProcessor, XCLIPConfig, XCLIPModel, XCLIPProcessor

    torch.manual_seed(0)
    xcfg = XCLIPConfig(
        text_config={
            "hidden_size": 32,
            "num_hidden_layers": 1,
            "num_attention_heads": 2,
            "intermediate_size": 64,
            "vocab_size": 1000,
            "max_position_embeddings": 77,
        },
        vision_config={
            "hidden_size": 32,
            "num_hidden_layers": 1,
            "num_attention_heads": 2,
            "intermediate_size": 64,
            "image_size": 32,
            "patch_size": 8,
            "num_frames": 4,
            "mit_hidden_size": 16,
            "mit_intermediate_size": 64,
            "mit_num_hidden_layers": 1,
            "mit_num_attention_heads": 2,
        },
        projection_dim=16,
        prompt_layers=1,
        prompt_attention_heads=2,
    )
    XCLIPModel(xcfg).save_pretrained(root / "xclip")
    XCLIPProcessor(
        image_processor=VideoMAEImageProcessor(
            size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}
        ),
        tokenizer=build_tokenizer(),
    ).save_pretrained(root / "xclip")
    return root


def test_dinov2_and_clip_metrics_load_through_metric_weights(
    tmp_path, manifest, tiny_metric_weights, capsys
):
    out = tmp_path / "ev"
    code = main(
        [
            "eval",
            str(manifest),
            "-o",
            str(out),
            "--methods",
            "homography",
            "-q",
            "--metric-weights",
            f"dinov2={tiny_metric_weights / 'dinov2'}",
            "--metric-weights",
            f"clip={tiny_metric_weights / 'clip'}",
            "--metric-weights",
            f"xclip={tiny_metric_weights / 'xclip'}",
        ]
    )
    assert code == 0, capsys.readouterr().err
    rows = _rows(out)
    for r in rows:
        assert all(-1 <= float(r[k]) <= 1 for k in ("dinov2", "clip", "xclip"))
    # pinned on the seeded tiny models: the numbers a user gets from these weights
    first = {k: round(float(rows[0][k]), 4) for k in ("dinov2", "clip", "xclip")}
    assert first == pytest.approx(PINNED_TINY_METRICS, abs=2e-3)
    record = json.loads((out / "eval.json").read_text())
    assert record["metrics"]["dinov2"] == {"weights": str(tiny_metric_weights / "dinov2")}


PINNED_TINY_METRICS = {
    "dinov2": 0.9964,
    "clip": -0.3332,
    "xclip": 0.0438,
}  # output.mp4 with mbtree=0


def test_metric_weights_errors_are_one_line(tmp_path, manifest, capsys, monkeypatch):
    code = main(
        [
            "eval",
            str(manifest),
            "-o",
            str(tmp_path / "a"),
            "--methods",
            "homography",
            "--metric-weights",
            f"dinov2={tmp_path / 'nowhere'}",
        ]
    )
    err = capsys.readouterr().err
    assert code == 1 and err.count("\n") == 1
    assert f"dinov2 weights folder {tmp_path / 'nowhere'} does not exist" in err
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    code = main(
        [
            "eval",
            str(manifest),
            "-o",
            str(tmp_path / "b"),
            "--methods",
            "homography",
            "--metrics",
            "clip",
        ]
    )
    err = capsys.readouterr().err
    assert code == 1 and err.count("\n") == 1
    assert err.startswith(
        'Error: clip weights "openai/clip-vit-base-patch32" are not in the Hugging Face cache and '
        "downloads are off (HF_HUB_OFFLINE); download them once online"
    )
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


# -- every diffusion method on tiny weights -----------------------------------------------------
def test_every_method_runs_on_tiny_weights(tmp_path, manifest, tiny_weights):
    methods = [
        "base",
        "motiondirector",
        "cammimic",
        "cammimic-no-usc",
        "cammimic-no-ortho",
        "cammimic-no-hg",
    ]
    m = _subset(manifest, tmp_path, 1)
    config = _config(**FAST, **{"backbone.weights": str(tiny_weights)})
    from cammimic import eval as eval_module

    eval_module._BACKBONES.clear()
    res = evaluate(
        m, tmp_path / "ev", methods=methods, config=config, progress=False, echo=lambda s: None
    )
    rows = {r["method"]: r for r in _rows(tmp_path / "ev")}
    # the backbone was read once for the 8 runs; the cached copy never got a LoRA injected
    assert res["failed"] == 0, {k: r["error"] for k, r in rows.items()}
    [cached] = eval_module._BACKBONES.values()
    assert not any("lora" in n for n, _ in cached.denoiser.named_parameters())
    assert res["failed"] == 0, {k: r["error"] for k, r in rows.items()}
    runs = {
        k: json.loads((tmp_path / "ev" / "runs" / "p0" / k / "run.json").read_text())
        for k in methods
    }
    # the settings each method stands for reached the run
    assert runs["base"]["finetune"]["steps"] == {"stage1": 0, "stage2": 0}
    assert runs["cammimic"]["finetune"]["steps"] == {"stage1": 2, "stage2": 2}
    assert runs["cammimic-no-usc"]["finetune"]["steps"] == {"stage1": 2, "stage2": 0}
    assert [g["name"] for g in runs["cammimic-no-hg"]["components"]["guidance"]] == ["none"]
    assert [g["name"] for g in runs["cammimic"]["components"]["guidance"]] == ["homography"]
    assert runs["motiondirector"]["phases"] == ["sample"]
    assert set(runs["motiondirector"]["lora_sources"]) == {"spatial", "temporal"}
    assert (
        "motiondirector-parts/spatial" in runs["motiondirector"]["lora_sources"]["spatial"]["path"]
    )
    cfg = {k: (tmp_path / "ev" / "runs" / "p0" / k / "config.toml").read_text() for k in methods}
    assert (
        "orthogonality = false" in cfg["cammimic-no-ortho"]
        and "orthogonality = true" in cfg["cammimic"]
    )
    for r in rows.values():
        assert r["status"] == "ok" and r["psnr_first"] != ""


# -- Ray ----------------------------------------------------------------------------------------
def test_ray_executor_gives_the_local_results(tmp_path, manifest):
    """A real local Ray instance (2 CPUs): the same rows as the local executor, seconds aside."""
    pytest.importorskip("ray")
    m = _subset(manifest, tmp_path, 2)
    config = _config(**{"run.seed": 5})
    local = evaluate(
        m,
        tmp_path / "local",
        methods="homography",
        config=config,
        progress=False,
        echo=lambda s: None,
    )
    ray = evaluate(
        m,
        tmp_path / "ray",
        methods="homography",
        config=config,
        executor="ray",
        ray_num_cpus=2,
        progress=False,
        echo=lambda s: None,
    )
    assert local["failed"] == ray["failed"] == 0 and ray["ran"] == 2

    def strip(rows):
        return [{k: v for k, v in r.items() if k != "seconds"} for r in rows]

    # every column but the timing, the pixel metrics included: output.mp4 is byte-reproducible
    assert strip(_rows(tmp_path / "ray")) == strip(_rows(tmp_path / "local"))
    for p in ("p0", "p1"):
        assert (tmp_path / "ray" / "runs" / p / "homography" / "output.mp4").read_bytes() == (
            tmp_path / "local" / "runs" / p / "homography" / "output.mp4"
        ).read_bytes()
    assert (tmp_path / "ray" / "runs" / "p1" / "homography" / "output.mp4").exists()
    assert json.loads((tmp_path / "ray" / "eval.json").read_text())["executor"] == "ray"


def test_a_plugin_registers_an_eval_metric(tmp_path, manifest, plugin_host):
    """register_eval_metrics: a third-party metric fills its own column in results.csv and summary.csv."""

    class Brightness:
        name = "brightness"
        columns = ("brightness",)

        def compute(self, sample):
            return {"brightness": float(sample.output.mean())}

    class BrightnessPlugin:
        @cammimic.hookimpl
        def register_eval_metrics(self, register):
            register("brightness", Brightness)

    plugin_host.register(BrightnessPlugin(), name="brightness-plugin")
    m = _subset(manifest, tmp_path, 1)
    evaluate(
        m,
        tmp_path / "ev",
        methods="homography",
        metrics={"brightness": {}},
        config=_config(),
        progress=False,
        host=plugin_host,
        echo=lambda s: None,
    )
    [row] = _rows(tmp_path / "ev")
    from cammimic.io import read_video

    out = read_video(tmp_path / "ev" / "runs" / "p0" / "homography" / "output.mp4").frames
    assert float(row["brightness"]) == pytest.approx(float(out.mean()), rel=1e-12)
    assert "brightness_lo" in (tmp_path / "ev" / "summary.csv").read_text()


# --- issue 21 §3: eval keeps its results honest


def _ev(out, man, capsys, *extra):
    code = main(
        ["eval", str(man), "-o", str(out), "--methods", "homography", "-q", *map(str, extra)]
    )
    return code, capsys.readouterr().err


def test_resume_redoes_items_whose_inputs_changed(tmp_path, manifest, capsys):
    man = _subset(manifest, tmp_path, 1)
    out = tmp_path / "ev"
    assert _ev(out, man, capsys)[0] == 0
    first = json.loads((out / "pairs" / "p0" / "homography.json").read_text())
    # same id, a new reference and prompt: the old output must not be paired with them
    man.write_text(
        man.read_text().replace("ref0.mp4", "ref1.mp4").replace("a photo of coffee", "a cat")
    )
    code, err = _ev(out, man, capsys)
    assert (
        code == 0
        and "redoing item p0 method homography: its reference, image or prompts changed" in err
    )
    again = json.loads((out / "pairs" / "p0" / "homography.json").read_text())
    assert again["inputs"]["reference"] != first["inputs"]["reference"]
    assert again["inputs"]["prompt_sha256"] != first["inputs"]["prompt_sha256"]
    code, err = _ev(out, man, capsys)
    assert code == 0 and "redoing" not in err  # unchanged now: skipped


def test_a_second_eval_on_a_locked_folder_stops_in_one_line(tmp_path, manifest, capsys):
    from cammimic.eval import _lock

    man = _subset(manifest, tmp_path, 1)
    out = tmp_path / "ev"
    out.mkdir()
    held = _lock(out)  # as another eval running into the same folder
    try:
        code, err = _ev(out, man, capsys)
        assert code == 1 and err == (
            f"Error: another cammimic eval is writing to {out} (it holds {out / '.eval.lock'}); "
            "wait for it to finish, or give another --output\n"
        )
        assert not (out / "runs").exists()
    finally:
        held.close()
    assert _ev(out, man, capsys)[0] == 0


def test_csv_cells_that_a_spreadsheet_would_run_are_neutralised():
    from cammimic.eval_report import _csv

    text = _csv(
        [
            {"id": "a", "error": '=HYPERLINK("http://x")'},
            {"id": "b", "error": "@SUM(1)"},
            {"id": "c", "error": "+1", "camera_score": -0.5},
            {"id": "d", "error": "-2"},
        ],
        ["id", "error", "camera_score"],
    )
    rows = list(csv.DictReader(text.splitlines()))
    assert [r["error"] for r in rows] == ['\'=HYPERLINK("http://x")', "'@SUM(1)", "'+1", "'-2"]
    assert rows[2]["camera_score"] == "-0.5"  # numbers stay numbers


def test_broken_files_and_a_file_as_output_are_one_line(tmp_path, manifest, capsys):
    man = _subset(manifest, tmp_path, 1)
    f = tmp_path / "file"
    f.write_text("x")
    code, err = _ev(f, man, capsys)
    assert (
        code == 1
        and err == f"Error: --output {f} is a file, not a folder; give a new or empty folder\n"
    )
    out = tmp_path / "ev"
    assert _ev(out, man, capsys)[0] == 0
    pair = out / "pairs" / "p0" / "homography.json"
    pair.write_text("{broken")
    code, err = _ev(out, man, capsys)
    assert (
        code == 1
        and err.count("\n") == 1
        and f"pair file {pair} cannot be read (JSONDecodeError" in err
    )
    pair.write_text("[1]")
    code, err = _ev(out, man, capsys)
    assert code == 1 and f"pair file {pair} does not hold a JSON object" in err
    (out / "eval.json").write_text("{broken")
    code, err = _ev(out, man, capsys)
    assert code == 1 and err.count("\n") == 1 and f"{out / 'eval.json'} cannot be read" in err
    big = tmp_path / "big.csv"
    big.write_text(
        "id,reference,image,prompt,reference_prompt\n"
        + 'p0,r.mp4,i.png,"'
        + "x" * 200_000
        + '",b\n'
    )
    code, err = _ev(tmp_path / "ev2", big, capsys)
    assert (
        code == 1
        and err.count("\n") == 1
        and f"manifest {big} row 1 cannot be read as CSV (field larger" in err
    )


def test_a_camera_preset_in_a_manifest_runs(tmp_path, manifest, capsys):
    man = tmp_path / "m.csv"
    image = manifest.parent / "img0.png"
    man.write_text(
        f"id,reference,image,prompt,reference_prompt\nz,camera:zoom-in:frames=8,{image},a cat,a room\n"
    )
    code, err = _ev(tmp_path / "ev", man, capsys)
    assert code == 0, err
    assert [r["status"] for r in _rows(tmp_path / "ev")] == ["ok"]


def test_motiondirector_is_motiondirector_s_recipe(tmp_path, manifest, tiny_weights, monkeypatch):
    """issue 22 §4: the baseline trains by MotionDirector's recipe (debiased temporal loss, FF LoRAs,
    dropout 0.1, AdamW, masked steps skip the spatial loss) and every run directory records it."""
    import torch

    from cammimic.lora import read_lora

    made = []

    class Spy(torch.optim.AdamW):
        def __init__(self, params, **kw):
            made.append(kw["weight_decay"])
            super().__init__(params, **kw)

    monkeypatch.setattr(torch.optim, "AdamW", Spy)
    config = _config(**{**FAST, "finetune.stage1_steps": 3, "backbone.weights": str(tiny_weights)})
    res = evaluate(
        _subset(manifest, tmp_path, 1),
        tmp_path / "ev",
        methods=["motiondirector"],
        config=config,
        progress=False,
        echo=lambda s: None,
    )
    assert res["failed"] == 0, _rows(tmp_path / "ev")[0]["error"]
    out = tmp_path / "ev" / "runs" / "p0" / "motiondirector"
    parts = out.parent / "motiondirector-parts"
    assert made == [1e-2, 1e-2, 1e-4]  # reference: spatial, temporal; the image's spatial path
    for run in (out, parts / "temporal", parts / "spatial"):
        toml = (run / "config.toml").read_text()
        for line in (
            "temporal_debias = true",
            "include_ff = true",
            "dropout = 0.1",
            'optimizer = "adamw"',
            "skip_spatial_when_masked = true",
        ):
            assert line in toml, (run.name, line)
    # the feed-forward layers carry LoRA in both groups (utils/lora.py: attn1 + ff, attn1 + attn2 + ff)
    for adapter, part in (("spatial", "spatial"), ("temporal", "temporal")):
        _, meta = read_lora(parts / part / "lora" / f"{adapter}.safetensors")
        targets = json.loads(meta["target_layers"])
        assert any(t.endswith("ff.net.2") for t in targets) and any(
            t.endswith("ff.net.0.proj") for t in targets
        )
    run = json.loads((out / "run.json").read_text())
    assert run["phases"] == ["sample"] and [g["name"] for g in run["components"]["guidance"]] == [
        "none"
    ]


def test_every_method_of_an_item_runs_on_the_same_frames_and_size(
    tmp_path, tiny_weights, plugin_host
):
    """issue 22 §5: frames and size are resolved once per item from the eval's backbone and given to
    every method, homography included; each row records them."""
    import attrs
    import cv2

    from cammimic.eval import item_geometry

    frames, _ = clip("pan", 96, 96, frames=20, name="astronaut")
    write_video(tmp_path / "ref.mp4", frames, 8.0)
    write_image(
        tmp_path / "img.png", cv2.resize(photo("coffee"), (96, 96), interpolation=cv2.INTER_AREA)
    )
    (tmp_path / "m.csv").write_text(
        "id,reference,image,prompt,reference_prompt\n"
        "p0,ref.mp4,img.png,a photo of coffee,astronaut\n"
    )
    fast = {
        k: v for k, v in FAST.items() if k != "run.frames"
    }  # frames left to the backbone: 16 of 20
    config = _config(**fast, **{"backbone.weights": str(tiny_weights)})
    res = evaluate(
        tmp_path / "m.csv",
        tmp_path / "ev",
        methods=["homography", "base"],
        config=config,
        progress=False,
        echo=lambda s: None,
    )
    rows = {r["method"]: r for r in _rows(tmp_path / "ev")}
    assert res["failed"] == 0, {k: r["error"] for k, r in rows.items()}
    for r in rows.values():
        assert (r["frames"], r["width"], r["height"]) == ("16", "64", "64")
    assert rows["homography"]["frame_indices"] == rows["base"]["frame_indices"]
    indices = [int(i) for i in rows["base"]["frame_indices"].split()]
    assert len(indices) == 16 and indices[0] == 0 and indices[-1] == 19  # 16 of the 20, evenly
    # the backbone's own size and frame rule when the config sets none
    [item] = read_manifest(tmp_path / "m.csv")
    bare = _config(**{"backbone.weights": str(tiny_weights)})
    assert item_geometry(item, bare, plugin_host) == {"frames": 16, "width": 576, "height": 320}
    assert item_geometry(item, bare.with_overrides({"run.frames": 8}), plugin_host)["frames"] == 8
    missing = attrs.evolve(item, reference=str(tmp_path / "nowhere.mp4"))
    assert "nowhere.mp4" in item_geometry(missing, bare, plugin_host)["error"]


def test_the_eval_backbones_own_settings_apply_where_the_user_set_none(tmp_path, manifest):
    """`cammimic eval --backbone mini` runs every method, homography included, with mini's own
    recipe (its finetuning steps, ranks and the kornia estimator that reads its frames); a setting
    the user gave wins. Each run re-reads the whole config, so the recipe is resolved once, up front."""
    pytest.importorskip("cammimic_mini")
    import cammimic_mini

    from cammimic.cli import main

    sub = _subset(manifest, tmp_path, 1)
    weights = tmp_path / "w"  # a folder is enough to build the adapter; homography loads nothing
    weights.mkdir()
    assert (
        main(
            [
                "eval",
                str(sub),
                "-o",
                str(tmp_path / "a"),
                "--methods",
                "homography",
                "--backbone",
                "mini",
                "--weights",
                str(weights),
                "-q",
            ]
        )
        == 0
    )
    config = json.loads((tmp_path / "a" / "eval.json").read_text())["config"]
    assert (
        config["motion_estimator"]["name"]
        == cammimic_mini.RECIPE["motion_estimator.name"]
        == "kornia"
    )
    assert config["finetune"]["stage1_steps"] == cammimic_mini.RECIPE["finetune.stage1_steps"]
    assert (
        json.loads((tmp_path / "a" / "runs" / "p0" / "homography" / "run.json").read_text())[
            "components"
        ]["motion_estimator"]["name"]
        == "kornia"
    )
    (tmp_path / "mine.toml").write_text(
        '[motion_estimator]\nname = "opencv"\n\n[finetune]\nstage1_steps = 7\n'
    )
    assert (
        main(
            [
                "eval",
                str(sub),
                "-o",
                str(tmp_path / "b"),
                "--methods",
                "homography",
                "--backbone",
                "mini",
                "--weights",
                str(weights),
                "--config",
                str(tmp_path / "mine.toml"),
                "-q",
            ]
        )
        == 0
    )
    config = json.loads((tmp_path / "b" / "eval.json").read_text())["config"]
    assert (
        config["motion_estimator"]["name"] == "opencv" and config["finetune"]["stage1_steps"] == 7
    )


def test_a_huge_prompt_in_a_jsonl_manifest_is_refused_naming_its_row(tmp_path):
    """A 50 MB prompt in a JSONL manifest (no CSV field limit there) is refused when the manifest is
    read, naming the row, before anything runs or is written into a report."""
    from cammimic.eval import read_manifest

    photo_pairs(tmp_path, 1)
    row = {
        "id": "p0",
        "reference": str(tmp_path / "ref0.mp4"),
        "image": str(tmp_path / "img0.png"),
        "prompt": "a mountain village " * 2_700_000,
        "reference_prompt": "a rocket",
    }
    (tmp_path / "m.jsonl").write_text(json.dumps(row) + "\n")
    with pytest.raises(
        CammimicError, match=r"row 1, column prompt: 51300000 characters long; at most 10000"
    ):
        read_manifest(tmp_path / "m.jsonl")
