"""Run configuration: a TOML file, CLI overrides on top, the resolved result written with every output.

Sections (all optional in a file)::

    [run]
    method = "cammimic"       # the transfer method: "cammimic" (the paper's) or "homography"
    prompt = ""               # the user image's prompt t_u (cammimic)
    reference_prompt = ""     # the reference's content t_R (cammimic)
    frames = 0                # frames of the output; 0 = the method's default
    width = 0                 # output size; 0 = the method's default
    height = 0
    fps = 0.0                 # output frame rate; 0 = the reference's
    seed = 0
    device = "auto"           # cammimic: "auto", "cpu", "cuda", "cuda:1", ...
    dtype = "auto"            # cammimic: "auto", "float32", "float16", "bfloat16"

    [motion_estimator]        # one component, chosen by name, with its parameters
    name = "opencv"

    [backbone]                # the diffusion backbone of the cammimic method
    name = "zeroscope"
    weights = "/models/zeroscope_v2_576w"

    [[guidance]]              # guidance terms for sampling; a list, combined in order
    name = "homography"
    weight = 0.3

    [lora]                    # the spatial and temporal LoRAs
    [finetune]                # Phase 1: stage 1 (reference video) and stage 2 (user image)
    [sampling]                # Phase 2: the denoising loop
    [homography]
    [motion]                  # strength, speed, reverse, smooth of the reference's motion
    [score]
    [output]
    [plugins]

Each plain section is one attrs class (``RunSection``, ``FinetuneSection``, ...) whose fields,
made by :func:`setting`, carry the default (its type is the accepted type), the choices or range,
the help and the command-line :class:`Option`. Everything else derives from them: ``DEFAULTS``,
``CHOICES`` and ``RANGES``, the validation here, the CLI's options and override map
(``cammimic.cli``), ``FinetuneSettings``'s defaults, and docs/config.md's tables
(``python -m cammimic.config_docs``, checked by the tests).
Unknown sections and keys are errors that name the key and the accepted ones. Component
parameters are checked against the component's factory when the component is created.
"""

from __future__ import annotations

import copy
import difflib
import sys
from pathlib import Path
from typing import Any

import attrs

from cammimic.errors import CammimicError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

__all__ = [
    "Config",
    "load_config",
    "DEFAULTS",
    "SECTIONS",
    "Option",
    "setting",
    "did_you_mean",
    "conforms",
]

METHODS = ("cammimic", "homography")


@attrs.frozen
class Option:
    """How a setting appears on the command line; ``cammimic.cli`` builds the click option from it.

    Bounds here are the option's own, checked by click (``--frames 1`` is refused as
    ``1 is not in the range x>=2``); the setting's range is checked after that, as for a file.
    """

    flag: str  #: ``"--stage1-steps"``
    help: str
    min: float | None = None  #: click's lower bound; ``None``: the plain type
    min_open: bool = False
    #: a flag that sets the setting to this value (``--no-stage2`` sets False); ``None``: takes a value
    sets: Any = None
    #: help that only ``cammimic run`` shows (the homography method's default), inserted before ")."
    also: str = ""

    @property
    def name(self) -> str:
        """The Python name click gives it (``--no-stage2`` → ``no_stage2``)."""
        return self.flag.lstrip("-").replace("-", "_")


def setting(
    default: Any,
    help: str,
    *,
    choices=(),
    range=None,
    accepts: str | None = None,
    option: Option | None = None,
    range_note: str = "",
):
    """One setting of a config section: its default (whose type is the accepted type), the
    choices or the closed range it must lie in, the help that docs/config.md shows, and the
    command-line option that overrides it (``None``: config-only)."""
    metadata = {
        "help": help,
        "choices": tuple(choices),
        "range": range,
        "accepts": accepts,
        "option": option,
    }
    if isinstance(default, list):
        return attrs.field(factory=lambda: list(default), metadata=metadata)
    return attrs.field(default=default, metadata=metadata)


@attrs.frozen
class RunSection:
    """[run]: what to transfer, at which size, seed and device."""

    method: str = setting(
        "cammimic",
        "The transfer method. `cammimic` is the paper's method (LoRA finetuning, then homography-guided "
        "sampling; needs a backbone and its weights, see [method.md](method.md)). `homography` is the paper's "
        "naive-homography baseline, which warps the user image along the reference's camera motion.",
        choices=METHODS,
        option=Option(
            "--method",
            "cammimic (default): the paper's method; homography: the naive-warp baseline.",
        ),
    )
    prompt: str = setting(
        "",
        'What the user image shows: t_u (stage 2). Sampling uses t_I = t_u + ", camera motion of <token>". '
        "Required by `cammimic`.",
        option=Option(
            "--prompt", 'What your image shows (t_u), e.g. "a mountain village at dusk".'
        ),
    )
    reference_prompt: str = setting(
        "",
        'What the reference video shows: t_R = this + ", camera motion of <token>" (stage 1).',
        option=Option(
            "--reference-prompt", 'What the reference video shows (t_R), e.g. "a rocket launch".'
        ),
    )
    frames: int = setting(
        0,
        "Frames of the output, sampled evenly from the reference. `0`: the method's default, 16 (the paper's) "
        "or fewer if the reference is shorter for `cammimic`, all of the reference's frames for `homography`. At run "
        "time the value must be between 2 and the reference's frame count.",
        range=(0, 1000),
        option=Option(
            "--frames",
            "Frames, sampled evenly from the reference (default: 16).",
            min=2,
            also="; --method homography: all",
        ),
    )
    width: int = setting(
        0,
        "Output width. `0`: the backbone's native width (576 for zeroscope, 256 for ModelScope) for `cammimic`; "
        "the reference's width, rounded down to even, for `homography`. `cammimic` needs a multiple of 64 on these "
        "backbones; `homography` an even number (H.264).",
        range=(0, 8192),
        option=Option(
            "--width",
            "Output width (default: the backbone's, e.g. 576).",
            min=16,
            also="; --method homography: the reference's",
        ),
    )
    height: int = setting(
        0,
        "Output height, as `width` (320 for zeroscope, 256 for ModelScope).",
        range=(0, 8192),
        option=Option(
            "--height",
            "Output height (default: the backbone's, e.g. 320).",
            min=16,
            also="; --method homography: the reference's",
        ),
    )
    fps: float = setting(
        0.0,
        "Output frame rate. `0` uses the reference's frame rate after sampling. Sampling keeps the time from the "
        "first frame to the last: 24 frames at 12 fps sampled to 16 frames play at 12 · 15/23 ≈ 7.83 fps.",
        range=(0, 240),
        option=Option(
            "--fps", "Output frame rate (default: the reference's).", min=0, min_open=True
        ),
    )
    seed: int = setting(
        0,
        "Seeds everything random: LoRA initialisation, the finetuning generator (timesteps, noise, the spatial "
        "frame, masking), the sampling noise, OpenCV's RNG (modulo 2³¹; RANSAC) and NumPy's (modulo 2³²). Same seed, "
        "inputs and device: the same output.",
        range=(0, 2**63 - 1),
        accepts="0 – 2⁶³−1",
        option=Option("--seed", "Random seed (default: 0).", min=0),
    )
    candidates: int = setting(
        1,
        "`cammimic`: best of N. After one Phase 1, sample N candidates with seeds `seed`, `seed + 1`, …, score "
        "each with CameraScore against the reference (and scene preservation: first-frame PSNR/SSIM to the user "
        "image, PSNR to the weak video in view), and keep the valid one with the lowest CameraScore as `output.mp4` "
        "(none valid: the first). Costs N samplings instead of one. `run.json` lists every candidate; their videos "
        "are in `candidates/`. `1`: one sampling, as without this setting. See [cli.md](cli.md#best-of-n).",
        range=(1, 64),
        option=Option(
            "--candidates",
            "Best of N: sample N seeds after one Phase 1, keep the lowest valid "
            "CameraScore (default: 1).",
            min=1,
        ),
    )
    device: str = setting(
        "auto",
        '`cammimic`: `"auto"` (CUDA if available, else CPU), `"cpu"`, `"cuda"`, `"cuda:1"`, ...',
        option=Option("--device", "cpu, cuda, cuda:1, ... (default: cuda if available)."),
    )
    dtype: str = setting(
        "auto",
        "`cammimic`: the dtype of the frozen weights. `auto` is float32 on CPU and bfloat16 on CUDA (float16 "
        "on GPUs without bfloat16). The LoRAs train in float32 whatever this is; float16 finetuning uses autocast "
        "and a loss scaler, bfloat16 autocast ([method.md](method.md#mixed-precision)).",
        choices=("auto", "float32", "float16", "bfloat16"),
        option=Option("--dtype", "Weights' dtype (default: float32 on CPU, bfloat16 on CUDA)."),
    )


@attrs.frozen
class LoraSection:
    """[lora]: the spatial and temporal LoRAs."""

    spatial_rank: int = setting(
        32,
        "Rank of the spatial LoRA (on spatial self-attention). MotionDirector's is 32.",
        range=(1, 1024),
        option=Option("--spatial-rank", "Rank of the spatial LoRA (default: 32).", min=1),
    )
    temporal_rank: int = setting(
        32,
        "Rank of the temporal LoRA (on temporal attention).",
        range=(1, 1024),
        option=Option("--temporal-rank", "Rank of the temporal LoRA (default: 32).", min=1),
    )
    alpha: float = setting(
        0.0, "LoRA alpha of both; `0` means alpha = rank (scale 1).", range=(0, 1e6)
    )
    dropout: float = setting(
        0.0,
        "Dropout on the LoRA input of both groups while finetuning (never while sampling). The paper gives none; "
        "MotionDirector uses 0.1.",
        range=(0, 0.9),
    )
    include_ff: bool = setting(
        False,
        "Also adapt the feed-forward layers of the spatial and temporal transformer blocks (MotionDirector "
        "does; the paper adapts attention only).",
    )
    token: str = setting("sks", 'The rare token <v> of "camera motion of <v>".')


@attrs.frozen
class FinetuneSection:
    """[finetune]: Phase 1, stage 1 (reference video) and stage 2 (user image)."""

    stage1_steps: int = setting(
        150,
        "Stage 1 steps on the reference video (L_temporal + δ·L_spatial).",
        range=(0, 1_000_000),
        option=Option(
            "--stage1-steps", "Stage 1 steps on the reference video (default: 150).", min=0
        ),
    )
    stage2_steps: int = setting(
        150,
        "Stage 2 steps on the user image (L_spatial + λ·L_ortho).",
        range=(0, 1_000_000),
        option=Option("--stage2-steps", "Stage 2 steps on your image (default: 150).", min=0),
    )
    learning_rate: float = setting(
        5e-4,
        "Adam learning rate (both stages).",
        range=(0, 1),
        option=Option("--lr", "Adam learning rate (default: 5e-4).", min=0, min_open=True),
    )
    optimizer: str = setting(
        "adam",
        "The optimiser of each LoRA group: `adam` (the paper) or `adamw` (MotionDirector's, decoupled weight "
        "decay).",
        choices=("adam", "adamw"),
    )
    weight_decay: float = setting(
        0.0,
        "Weight decay of the optimiser (`adamw`: decoupled; `adam`: L2 added to the gradient). MotionDirector: "
        "`adamw` with 1e-2 on a video, 1e-4 on an image.",
        range=(0, 1),
    )
    spatial_weight: float = setting(
        0.5,
        "Deprecated, no effect: δ of L1 = L_temporal + δ·L_spatial (the paper: δ ∈ (0, 1)). The spatial LoRA's "
        "own Adam normalises a constant scale away ([method.md](method.md#δ-spatial_weight)); a value other than 0.5 warns.",
        range=(0, 1e3),
    )
    spatial_mask_probability: float = setting(
        0.2,
        "Probability that the spatial LoRA is switched off for a step's all-frame (temporal) pass, as in "
        "MotionDirector.",
        range=(0, 1),
    )
    temporal_debias: bool = setting(
        False,
        "Add MotionDirector's appearance-debiased temporal loss, MSE(√2·ε̂_f − ε̂_a, √2·ε_f − ε_a) with a "
        "random anchor frame a, to L_temporal.",
    )
    skip_spatial_when_masked: bool = setting(
        False,
        "On a stage-1 step whose all-frame pass masks the spatial LoRA, skip the spatial loss and the "
        "spatial LoRA's update too, as MotionDirector does.",
    )
    stage2: bool = setting(
        True,
        'Run stage 2. `false` is the paper\'s "no USC" ablation (`--no-stage2`).',
        option=Option(
            "--no-stage2", "Ablation: skip stage 2 (no user-image spatial learning).", sets=False
        ),
    )
    orthogonality: bool = setting(
        True,
        'Use the orthogonality loss in stage 2. `false` is the "no ORTHO" ablation (`--no-ortho`); its value '
        "is still logged.",
        option=Option(
            "--no-ortho", "Ablation: stage 2 without the orthogonality loss.", sets=False
        ),
    )
    orthogonality_weight: float = setting(
        0.4,
        "λ: weight of L_ortho in stage 2. With `subspace`, ‖∇(λ·L_ortho)‖/‖∇L_spatial‖ ≈ 0.2–0.4 at zeroscope's "
        "widths; `losses.csv` logs the ratio (`ortho_ratio`).",
        range=(0, 1e6),
    )
    orthogonality_definition: str = setting(
        "subspace",
        "How ⟨W_spatial, W_temporal⟩ is measured on paired layers; see "
        "[method.md](method.md#the-orthogonality-loss) (cosine needs λ in the hundreds to thousands at real widths).",
        choices=("cosine", "inner", "subspace"),
    )
    max_grad_norm: float = setting(
        1.0,
        "Gradient-norm clipping of each LoRA group (spatial, temporal) on its own; `0` turns it off.",
        range=(0, 1e6),
    )
    checkpoint_every: int = setting(
        50,
        "Write `OUTPUT.checkpoints/checkpoint.safetensors` every N steps (and at the end of each stage, and on "
        "Ctrl-C); `0` only at stage ends and on Ctrl-C. `--resume` continues from it.",
        range=(0, 1_000_000),
    )
    gradient_checkpointing: bool = setting(
        False,
        "Recompute the denoiser's activations in the backward pass: less memory, more time.",
        option=Option(
            "--gradient-checkpointing", "Trade compute for memory in training.", sets=True
        ),
    )


@attrs.frozen
class SamplingSection:
    """[sampling]: Phase 2, the denoising loop."""

    # DDIM on a 1000-step schedule with steps_offset 1 takes at most 999
    steps: int = setting(
        0,
        "Denoising steps. `0`: the backbone's default (50 for zeroscope, ModelScope and wan; 25 for mini). DDIM "
        "on a 1000-step schedule with `steps_offset` 1 can take at most 999.",
        range=(0, 999),
        option=Option("--steps", "Sampling steps (default: the backbone's: 50, mini 25).", min=1),
    )
    guidance_scale: float = setting(
        0.0,
        "Classifier-free guidance scale. `0`: the backbone's default (9.0 for zeroscope and ModelScope; 5.0 "
        "for wan, as diffusers' `WanPipeline`; 1.0 for mini, measured in docs/mini.md); `1` turns it off (one "
        "denoiser pass per step).",
        range=(0, 100),
        option=Option(
            "--guidance-scale",
            "Classifier-free guidance scale; 1 = off (default: the backbone's: 9, wan 5, mini 1).",
            min=0,
        ),
    )
    # each backbone lists its samplers (cammimic.backbones.samplers); the run checks the name against them
    scheduler: str = setting(
        "auto",
        "The sampler, one of the backbone's: `ddim` or `dpm` (DPM-Solver++) for zeroscope, ModelScope and "
        "mini; `unipc` or `euler` (flow matching) for wan; `auto` = the backbone's first (`ddim`, `unipc`).",
        option=Option(
            "--scheduler",
            "Sampling scheduler, one of the backbone's (default: auto = its own default).",
        ),
    )
    negative_prompt: str = setting(
        "auto",
        'The prompt of the unconditional branch. `"auto"`: the backbone\'s (empty for zeroscope, ModelScope '
        "and mini; Wan's published negative prompt for wan, as in diffusers' `WanPipeline` example); `\"\"`: none.",
    )
    eta: float = setting(0.0, "DDIM's η (0 = deterministic DDIM).", range=(0, 1))
    spatial_scale: float = setting(
        1.0,
        "Strength of the spatial LoRA at sampling (0 = off).",
        range=(-10, 10),
        option=Option("--spatial-scale", "Strength of the spatial LoRA (0 = off; default 1)."),
    )
    temporal_scale: float = setting(
        1.0,
        "Strength of the temporal LoRA at sampling (0 = off).",
        range=(-10, 10),
        option=Option("--temporal-scale", "Strength of the temporal LoRA (0 = off; default 1)."),
    )
    window_overlap: int = setting(
        0,
        "When `--frames` exceeds what the backbone samples at once (its `max_frames`: mini 8, zeroscope 24, "
        "ModelScope 16, wan 81), Phase 2 samples overlapping windows of that many frames along the one camera path "
        "and crossfades them; this is the frames two neighbouring windows share (at least; windows are spread "
        "evenly). `0`: a quarter of the window. At most half the window. Runs within `max_frames` sample at once "
        "and ignore it. See [cli.md](cli.md#longer-than-the-backbones-clip).",
        range=(0, 1000),
        option=Option(
            "--window-overlap",
            "Frames two neighbouring windows share when --frames exceeds what the "
            "backbone samples at once (default: 0 = a quarter of the window).",
            min=0,
        ),
    )


@attrs.frozen
class HomographySection:
    """[homography]: the weak video (and the homography method's output)."""

    fill: str = setting(
        "black",
        "What fills the parts of a frame that the user image does not cover.",
        choices=("black", "reflect", "replicate"),
        option=Option("--fill", "What fills out-of-view areas of the weak video."),
    )


@attrs.frozen
class MotionSection:
    """[motion]: controls on the reference's camera motion, applied before the weak video is built."""

    strength: float = setting(
        1.0,
        "Scale every frame-to-frame motion in the Lie algebra (H^S via the matrix logarithm): `0.5` half the "
        "move, `0` a still camera, `-1` the opposite move. See [cli.md](cli.md#controls-on-the-references-motion).",
        range=(-10, 10),
        option=Option(
            "--motion-strength",
            "Scale the reference's motion: H^S per frame (0.5 = half; default: 1).",
        ),
    )
    speed: float = setting(
        1.0,
        "Retime the camera path: covered in round((T-1)/speed) + 1 frames (`2`: the same path in half the "
        "frames; `0.5`: in twice as many). The output has that many frames.",
        range=(0.05, 20),
        option=Option(
            "--motion-speed",
            "Retime the camera path: 2 covers it in half the frames (default: 1).",
            min=0,
            min_open=True,
        ),
    )
    reverse: bool = setting(
        False,
        "Play the reference's camera path backwards.",
        option=Option("--motion-reverse", "Play the reference's camera path backwards.", sets=True),
    )
    smooth: float = setting(
        0.0,
        "Remove hand-shake: low-pass the per-frame log-homographies with a Gaussian of this sigma, in frames "
        "(`0`: off; `2`–`3` removes jitter and keeps the move).",
        range=(0, 100),
        option=Option(
            "--motion-smooth",
            "Remove hand-shake: Gaussian sigma in frames on the log-homographies "
            "(default: 0 = off).",
            min=0,
        ),
    )


@attrs.frozen
class ScoreSection:
    """[score]: CameraScore."""

    variant: str = setting(
        "resolution_free",
        "Which CameraScore to report (see [motion.md](motion.md#camerascore)). `score.json` always "
        "holds both.",
        choices=("resolution_free", "paper"),
        option=Option("--variant", "CameraScore variant (default: resolution_free)."),
    )
    max_fallback_share: float = setting(
        0.25,
        "A CameraScore is *invalid* when more than this share of either video's frame pairs fell back (see "
        "[motion.md](motion.md#fallbacks-and-validity)).",
        range=(0, 1),
    )


@attrs.frozen
class OutputSection:
    """[output]: the files written."""

    gif: bool = setting(
        False,
        "Also write `output.gif`.",
        option=Option("--gif", "Also write output.gif.", sets=True),
    )
    crf: int = setting(
        18,
        "H.264 constant quality of the `.mp4` files. Lower means better quality. libx264's macroblock-tree is off "
        "so the same frames always give the same file.",
        range=(0, 51),
    )


@attrs.frozen
class PluginsSection:
    """[plugins]: which plugins load."""

    block: list = setting(
        [],
        "Plugin names not to load (entry-point names, or `cammimic.default_plugins`). See "
        "[plugins.md](plugins.md#how-plugins-are-found).",
        accepts="list of strings",
    )


#: The plain sections, in the order files, messages and docs list them: one schema per section.
SECTIONS: dict[str, type] = {
    "run": RunSection,
    "lora": LoraSection,
    "finetune": FinetuneSection,
    "sampling": SamplingSection,
    "homography": HomographySection,
    "motion": MotionSection,
    "score": ScoreSection,
    "output": OutputSection,
    "plugins": PluginsSection,
}
#: Component sections: one table, or (guidance) a list of tables; each names a component. Their
#: parameters belong to the component's factory; names come from plugins, so no choices here.
COMPONENT_DEFAULTS: dict[str, Any] = {
    "motion_estimator": {"name": "opencv"},
    "backbone": {"name": "zeroscope"},
    "guidance": [{"name": "homography"}],
    "noise": {"name": "iid"},
}
#: Command-line options that select a component or set a component parameter.
COMPONENT_OPTIONS: dict[str, Option] = {
    "motion_estimator.name": Option("--estimator", "Motion estimator (default: opencv)."),
    "backbone.name": Option(
        "--backbone", "Backbone adapter (default: zeroscope; see `cammimic plugins`)."
    ),
    "backbone.weights": Option(
        "--weights", "Backbone weights: a Hub id or a local diffusers-layout directory."
    ),
    "noise.name": Option(
        "--noise",
        "Initial noise of sampling: iid (default) or warped-noise (moved along the "
        "reference's camera; see `cammimic plugins`).",
    ),
}


def fields(section: str) -> tuple[attrs.Attribute, ...]:
    """The settings of a plain section, with their metadata (help, choices, range, option)."""
    return attrs.fields(SECTIONS[section])


def field(dotted: str) -> attrs.Attribute:
    """The setting ``"section.key"``."""
    section, _, key = dotted.partition(".")
    return getattr(attrs.fields(SECTIONS[section]), key)


#: Derived from the schema (kept as tables for callers): section -> key -> default.
DEFAULTS: dict[str, dict[str, Any]] = {name: attrs.asdict(cls()) for name, cls in SECTIONS.items()}
CHOICES: dict[tuple[str, str], tuple[str, ...]] = {
    (s, f.name): f.metadata["choices"] for s in SECTIONS for f in fields(s) if f.metadata["choices"]
}
RANGES: dict[tuple[str, str], tuple[float, float]] = {
    (s, f.name): f.metadata["range"] for s in SECTIONS for f in fields(s) if f.metadata["range"]
}


def did_you_mean(name: str, choices) -> str:
    """`` (did you mean "x"?)`` for the closest of ``choices``, or ``""``."""
    close = difflib.get_close_matches(name, list(choices), n=1, cutoff=0.5)
    return f' (did you mean "{close[0]}"?)' if close else ""


def conforms(value: Any, default: Any) -> tuple[bool, Any]:
    """Whether ``value`` has the type of ``default`` (the one type rule of settings and component
    parameters): a bool is never a number, an int is accepted (and converted) where a float is
    expected, a list or tuple where a list or tuple is. Returns ``(ok, value converted)``."""
    expected = type(default)
    if expected is bool:
        return isinstance(value, bool), value
    if expected is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        return ok, float(value) if ok else value
    if expected is int:
        return isinstance(value, int) and not isinstance(value, bool), value
    if expected in (tuple, list):
        ok = isinstance(value, (list, tuple))
        return ok, expected(value) if ok else value
    return isinstance(value, expected), value


def _type_name(value) -> str:
    return {
        bool: "true/false",
        int: "an integer",
        float: "a number",
        str: "a string",
        list: "a list",
    }[type(value)]


#: The longest text a setting may hold (prompts, paths, names): config.toml and run.json keep
#: settings whole, so a 50 MB prompt is refused here instead of being copied into every record.
MAX_TEXT_SETTING = 10_000


def _check_value(section: str, key: str, value: Any, where: str) -> Any:
    default = DEFAULTS[section][key]
    ok, value = conforms(value, default)
    if not ok:
        raise CammimicError(
            f"[{section}] {key}{where} must be {_type_name(default)}, got {value!r}"
        )
    meta = getattr(fields(section), key).metadata
    if meta["choices"] and value not in meta["choices"]:
        choices = meta["choices"]
        raise CammimicError(
            f"[{section}] {key}{where} = {value!r} is unknown{did_you_mean(value, choices)}; "
            f"try one of {list(choices)}"
        )
    if meta["range"]:
        lo, hi = meta["range"]
        if not lo <= value <= hi:
            raise CammimicError(
                f"[{section}] {key}{where} = {value!r} is out of range [{lo}, {hi}]"
            )
    if isinstance(value, str) and len(value) > MAX_TEXT_SETTING:
        raise CammimicError(
            f"[{section}] {key}{where} is {len(value)} characters long; at most "
            f"{MAX_TEXT_SETTING} are accepted (a text encoder reads the first 77 tokens or so)"
        )
    return value


def _check_component(section: str, table: Any, where: str) -> dict[str, Any]:
    if not isinstance(table, dict):
        raise CammimicError(f"[{section}]{where} must be a table with a name, got {table!r}")
    if "name" not in table or not isinstance(table["name"], str):
        raise CammimicError(
            f'[{section}]{where} needs name = "..." (see `cammimic plugins` for names)'
        )
    return dict(table)


@attrs.define
class Config:
    """A validated configuration. ``data`` holds every section, defaults filled in."""

    data: dict[str, Any]
    source: str | None = None  #: the file it came from, for messages
    #: the ``"section.key"`` settings the user gave (in the file or as overrides), whole sections
    #: as ``"section"``: what a backbone's own defaults (``recipe_defaults``) never replace
    explicit: frozenset[str] = frozenset()

    def is_explicit(self, dotted: str) -> bool:
        """Whether the user set ``dotted`` (``"section.key"``) or its whole section."""
        return dotted in self.explicit or dotted.partition(".")[0] in self.explicit

    @property
    def where(self) -> str:
        return f" in {self.source}" if self.source else ""

    def __getitem__(self, section: str) -> Any:
        return self.data[section]

    def component(self, section: str) -> tuple[str, dict[str, Any]]:
        """``(name, params)`` of a single-component section such as ``motion_estimator``."""
        if self.data[section] is None:
            raise CammimicError(
                f'no [{section}] is selected; add [{section}] name = "..." to your config'
            )
        table = dict(self.data[section])
        return table.pop("name"), table

    def with_overrides(self, overrides: dict[str, Any]) -> Config:
        """A copy with ``{"section.key": value}`` overrides applied (``None`` values are skipped).

        ``"motion_estimator.name"`` selects another component and drops the file's parameters
        for the old one.
        """
        data = copy.deepcopy(self.data)
        explicit = set(self.explicit)
        for dotted, value in overrides.items():
            if value is None:
                continue
            explicit.add(dotted)
            if dotted == "guidance":  # the whole list of terms
                items = value if isinstance(value, list) else [value]
                data["guidance"] = [
                    _check_component("guidance", t, " (command line)") for t in items
                ]
                continue
            section, _, key = dotted.partition(".")
            if section in COMPONENT_DEFAULTS and section != "guidance":
                if key == "name" and (data[section] or {}).get("name") != value:
                    data[section] = {"name": value}
                elif data[section] is None:
                    raise CammimicError(f"set [{section}] name before its parameter '{key}'")
                else:
                    data[section][key] = value
            elif section not in DEFAULTS or key not in DEFAULTS[section]:
                known = [f"{s}.{k}" for s, keys in DEFAULTS.items() for k in keys]
                known += [f"{s}.name" for s in COMPONENT_DEFAULTS if s != "guidance"]
                raise CammimicError(
                    f"unknown setting '{dotted}'{did_you_mean(dotted, known)}; accepted: {', '.join(known)}"
                )
            else:
                data[section][key] = _check_value(section, key, value, " (command line)")
        return Config(data, self.source, frozenset(explicit))

    def to_toml(self) -> str:
        import tomli_w

        # TOML has no null: leave out component sections nothing selected. An empty guidance
        # list is kept (`guidance = []`): it means "no terms", not "the default".
        data = {k: v for k, v in self.data.items() if v is not None}
        plain = {k: v for k, v in data.items() if not (isinstance(v, list) and v == [])}
        empty = [k for k, v in data.items() if isinstance(v, list) and v == []]
        text = tomli_w.dumps(plain)
        return "".join(f"{k} = []\n" for k in empty) + ("\n" if empty else "") + text


def from_dict(raw: dict[str, Any], source: str | None = None) -> Config:
    """Validate a config dict (as parsed from TOML) and fill in defaults."""
    where = f" in {source}" if source else ""
    data: dict[str, Any] = copy.deepcopy(DEFAULTS) | copy.deepcopy(COMPONENT_DEFAULTS)
    accepted_sections = list(DEFAULTS) + list(COMPONENT_DEFAULTS)
    for section, table in raw.items():
        if section not in accepted_sections:
            raise CammimicError(
                f"unknown section [{section}]{where}{did_you_mean(section, accepted_sections)}; "
                f"accepted: {', '.join(f'[{s}]' for s in accepted_sections)}"
            )
        if section == "guidance":
            items = table if isinstance(table, list) else [table]
            data[section] = [_check_component(section, t, where) for t in items]
            continue
        if section in COMPONENT_DEFAULTS:
            data[section] = _check_component(section, table, where)
            continue
        if not isinstance(table, dict):
            raise CammimicError(f"[{section}]{where} must be a table, got {table!r}")
        for key, value in table.items():
            if key not in DEFAULTS[section]:
                accepted = DEFAULTS[section]
                raise CammimicError(
                    f"unknown key '{key}' in [{section}]{where}{did_you_mean(key, accepted)}; "
                    f"accepted: {', '.join(accepted)}"
                )
            data[section][key] = _check_value(section, key, value, where)
    explicit = {s for s, t in raw.items() if not isinstance(t, dict) or s in COMPONENT_DEFAULTS}
    explicit |= {
        f"{s}.{k}"
        for s, t in raw.items()
        if isinstance(t, dict) and s not in COMPONENT_DEFAULTS
        for k in t
    }
    return Config(data, source, frozenset(explicit))


#: Deepest nesting of tables and arrays a config file may have (cammimic's need 3).
MAX_DEPTH = 8


def _depth(value) -> int:
    """Nesting depth of tables and arrays, without recursion."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, level = stack.pop()
        deepest = max(deepest, level)
        children = (
            item.values() if isinstance(item, dict) else item if isinstance(item, list) else ()
        )
        stack.extend((c, level + 1) for c in children if isinstance(c, (dict, list)))
    return deepest


def load_config(path=None) -> Config:
    """Read and validate a TOML config file; ``None`` gives the defaults."""
    if path is None:
        return from_dict({})
    path = Path(path)
    if not path.is_file():
        raise CammimicError(f"config file {path} does not exist; check the --config path")
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise CammimicError(f"config file {path} is not valid TOML: {exc}") from exc
    except RecursionError as exc:
        raise CammimicError(
            f"config file {path} nests arrays or tables too deeply; a config needs at most {MAX_DEPTH} levels"
        ) from exc
    except UnicodeDecodeError as exc:
        raise CammimicError(f"config file {path} is not UTF-8 text") from exc
    if _depth(raw) > MAX_DEPTH:
        raise CammimicError(
            f"config file {path} nests arrays or tables too deeply; a config needs at most {MAX_DEPTH} levels"
        )
    return from_dict(raw, str(path))
