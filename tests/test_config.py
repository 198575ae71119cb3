"""Config files: validation with teaching errors, overrides, and the resolved config."""

from __future__ import annotations

import pytest

from cammimic.config import from_dict, load_config
from cammimic.errors import CammimicError


def write(tmp_path, text):
    p = tmp_path / "config.toml"
    p.write_text(text)
    return p


def test_defaults():
    c = load_config()
    assert c["run"]["method"] == "cammimic" and c.component("motion_estimator") == ("opencv", {})
    assert c.component("backbone") == ("zeroscope", {})
    assert c["guidance"] == [{"name": "homography"}]
    # the paper's Phase 1 defaults
    assert (
        c["finetune"]["stage1_steps"],
        c["finetune"]["stage2_steps"],
        c["finetune"]["learning_rate"],
    ) == (150, 150, 5e-4)


def test_an_empty_guidance_list_survives_the_round_trip(tmp_path):
    c = load_config().with_overrides({"guidance": []})
    assert c["guidance"] == []
    path = tmp_path / "c.toml"
    path.write_text(c.to_toml())
    assert load_config(path)["guidance"] == []
    two = load_config().with_overrides(
        {"guidance": [{"name": "homography", "weight": 0.1}, {"name": "none"}]}
    )
    path.write_text(two.to_toml())
    assert load_config(path)["guidance"] == [
        {"name": "homography", "weight": 0.1},
        {"name": "none"},
    ]


def test_file_selects_components_with_parameters(tmp_path):
    c = load_config(
        write(
            tmp_path,
            """
[run]
frames = 16
width = 256
height = 256
[motion_estimator]
name = "opencv"
ratio = 0.7
[[guidance]]
name = "none"
[homography]
fill = "reflect"
""",
        )
    )
    assert c["run"]["frames"] == 16 and c["homography"]["fill"] == "reflect"
    assert c.component("motion_estimator") == ("opencv", {"ratio": 0.7})
    assert c["guidance"] == [{"name": "none"}]


@pytest.mark.parametrize(
    "text, message",
    [
        (
            "[run]\nframe = 16\n",
            "unknown key 'frame' in [run] in {p} (did you mean \"frames\"?); accepted: method, prompt, reference_prompt, frames",
        ),
        ("[runn]\n", 'unknown section [runn] in {p} (did you mean "run"?)'),
        ('[run]\nframes = "16"\n', "[run] frames in {p} must be an integer, got '16'"),
        ("[run]\nframes = true\n", "[run] frames in {p} must be an integer, got True"),
        ("[run]\nframes = -1\n", "[run] frames in {p} = -1 is out of range [0, 1000]"),
        (
            '[homography]\nfill = "blak"\n',
            "[homography] fill in {p} = 'blak' is unknown (did you mean \"black\"?)",
        ),
        ("[motion_estimator]\nratio = 0.7\n", '[motion_estimator] in {p} needs name = "..."'),
        ("[run\n", "config file {p} is not valid TOML"),
    ],
)
def test_bad_files_say_what_where_and_how(tmp_path, text, message):
    p = write(tmp_path, text)
    with pytest.raises(CammimicError) as e:
        load_config(p)
    assert message.format(p=p) in str(e.value)
    assert "\n" not in str(e.value)


def test_missing_file(tmp_path):
    with pytest.raises(CammimicError, match="does not exist; check the --config path"):
        load_config(tmp_path / "nope.toml")


def test_overrides_win_and_switching_component_drops_its_parameters(tmp_path):
    c = load_config(
        write(tmp_path, '[run]\nframes = 16\n[motion_estimator]\nname = "opencv"\nratio = 0.7\n')
    )
    o = c.with_overrides({"run.frames": 8, "run.width": None, "motion_estimator.name": "kornia"})
    assert o["run"]["frames"] == 8 and o["run"]["width"] == 0
    assert o.component("motion_estimator") == ("kornia", {})
    assert c["run"]["frames"] == 16  # the original is untouched
    same = c.with_overrides({"motion_estimator.name": "opencv"})
    assert same.component("motion_estimator") == ("opencv", {"ratio": 0.7})
    with pytest.raises(CammimicError, match=r"\[run\] seed \(command line\) = -3 is out of range"):
        c.with_overrides({"run.seed": -3})
    with pytest.raises(
        CammimicError,
        match=r"unknown setting 'homography.fil' \(did you mean \"homography.fill\"\?\)",
    ):
        c.with_overrides({"homography.fil": "black"})


def test_transfer_rejects_unknown_overrides(tmp_path):
    from cammimic.api import transfer

    with pytest.raises(CammimicError, match="unknown setting 'run.framez'"):
        transfer("ref.mp4", "img.png", tmp_path / "o", framez=3)
    assert not (tmp_path / "o").exists()


def test_resolved_config_round_trips(tmp_path):
    c = from_dict({"run": {"frames": 12}, "motion_estimator": {"name": "kornia", "levels": 4}})
    again = load_config(write(tmp_path, c.to_toml()))
    assert again.data == c.data


def test_component_parameters_are_checked_against_the_factory(tmp_path, plugin_host):
    c = load_config(write(tmp_path, '[motion_estimator]\nname = "opencv"\nratoi = 0.7\n'))
    name, params = c.component("motion_estimator")
    with pytest.raises(
        CammimicError,
        match=r"has no parameter 'ratoi' \(did you mean \"ratio\"\?\); accepted: detector",
    ):
        plugin_host.create("motion_estimator", name, params)


# -- one schema per setting (issue 11) ---------------------------------------------------------

#: The tables config.py held by hand before the schema (copied from it): section -> key -> default,
#: choices and ranges. The schema must reproduce them exactly, types and order included.
OLD_DEFAULTS = {
    "run": {
        "method": "cammimic",
        "prompt": "",
        "reference_prompt": "",
        "frames": 0,
        "width": 0,
        "height": 0,
        "fps": 0.0,
        "seed": 0,
        "candidates": 1,
        "device": "auto",
        "dtype": "auto",  # candidates: issue 25 §1
    },
    "lora": {
        "spatial_rank": 32,
        "temporal_rank": 32,
        "alpha": 0.0,
        "dropout": 0.0,
        "include_ff": False,
        "token": "sks",
    },
    "finetune": {
        "stage1_steps": 150,
        "stage2_steps": 150,
        "learning_rate": 5e-4,
        "optimizer": "adam",
        "weight_decay": 0.0,  # issue 22 §4 (MotionDirector's AdamW)
        "spatial_weight": 0.5,
        "spatial_mask_probability": 0.2,
        "temporal_debias": False,
        "skip_spatial_when_masked": False,  # issue 22 §4
        "stage2": True,
        "orthogonality": True,
        "orthogonality_weight": 0.4,
        "orthogonality_definition": "subspace",
        "max_grad_norm": 1.0,
        "checkpoint_every": 50,
        "gradient_checkpointing": False,
    },
    "sampling": {
        # "auto" (the backbone's first sampler, ddim for the UNet3D backbones): each backbone lists its own
        # issue 22 §3: 0, 0 and "auto" leave steps, CFG scale and negative prompt to the backbone
        "steps": 0,
        "guidance_scale": 0.0,
        "scheduler": "auto",
        "negative_prompt": "auto",
        "eta": 0.0,
        "spatial_scale": 1.0,
        "temporal_scale": 1.0,
        "window_overlap": 0,  # issue 25 §4
    },
    "homography": {"fill": "black"},
    "motion": {
        "strength": 1.0,
        "speed": 1.0,
        "reverse": False,
        "smooth": 0.0,
    },  # issue 25, not an old table
    "score": {"variant": "resolution_free", "max_fallback_share": 0.25},
    "output": {"gif": False, "crf": 18},
    "plugins": {"block": []},
}
OLD_CHOICES = {
    ("run", "method"): ("cammimic", "homography"),
    ("homography", "fill"): ("black", "reflect", "replicate"),
    ("score", "variant"): ("resolution_free", "paper"),
    ("run", "dtype"): ("auto", "float32", "float16", "bfloat16"),
    ("finetune", "orthogonality_definition"): ("cosine", "inner", "subspace"),
    ("finetune", "optimizer"): ("adam", "adamw"),  # issue 22 §4
}  # [sampling] scheduler: no fixed choices, the backbone's samplers (cammimic.backbones)
OLD_RANGES = {
    ("run", "frames"): (0, 1000),
    ("run", "width"): (0, 8192),
    ("run", "height"): (0, 8192),
    ("run", "fps"): (0, 240),
    ("run", "seed"): (0, 2**63 - 1),
    ("run", "candidates"): (1, 64),
    ("output", "crf"): (0, 51),
    ("lora", "spatial_rank"): (1, 1024),
    ("lora", "temporal_rank"): (1, 1024),
    ("lora", "alpha"): (0, 1e6),
    ("lora", "dropout"): (0, 0.9),
    ("finetune", "stage1_steps"): (0, 1_000_000),
    ("finetune", "stage2_steps"): (0, 1_000_000),
    ("finetune", "learning_rate"): (0, 1),
    ("finetune", "spatial_weight"): (0, 1e3),
    ("finetune", "weight_decay"): (0, 1),  # issue 22 §4
    ("finetune", "spatial_mask_probability"): (0, 1),
    ("finetune", "orthogonality_weight"): (0, 1e6),
    ("finetune", "max_grad_norm"): (0, 1e6),
    ("finetune", "checkpoint_every"): (0, 1_000_000),
    ("score", "max_fallback_share"): (0, 1),
    ("sampling", "steps"): (0, 999),
    ("sampling", "guidance_scale"): (0, 100),
    ("sampling", "eta"): (0, 1),
    ("sampling", "spatial_scale"): (-10, 10),
    ("sampling", "temporal_scale"): (-10, 10),
    ("motion", "strength"): (-10, 10),
    ("motion", "speed"): (0.05, 20),
    ("motion", "smooth"): (0, 100),  # issue 25
    ("sampling", "window_overlap"): (0, 1000),  # issue 25 §4
}
#: Settings with no command-line option: set them in a file (docs/config.md says so by listing
#: only the others under "Command-line overrides").
CONFIG_ONLY = {
    "lora.alpha",
    "lora.dropout",
    "lora.include_ff",
    "lora.token",
    "finetune.spatial_weight",
    "finetune.spatial_mask_probability",
    "finetune.temporal_debias",
    "finetune.orthogonality_weight",
    "finetune.orthogonality_definition",
    "finetune.max_grad_norm",
    "finetune.checkpoint_every",
    "finetune.optimizer",
    "finetune.weight_decay",
    "finetune.skip_spatial_when_masked",
    "sampling.negative_prompt",
    "sampling.eta",
    "score.max_fallback_share",
    "output.crf",
    "plugins.block",
}


def test_the_schema_reproduces_the_old_defaults_choices_and_ranges():
    from cammimic import config

    defaults = {s: attrs_asdict(cls()) for s, cls in config.SECTIONS.items()}
    assert defaults == OLD_DEFAULTS == config.DEFAULTS
    assert [list(t) for t in defaults.values()] == [
        list(t) for t in OLD_DEFAULTS.values()
    ]  # order of messages
    types = {(s, k): type(v) for s, t in defaults.items() for k, v in t.items()}
    assert types == {
        (s, k): type(v) for s, t in OLD_DEFAULTS.items() for k, v in t.items()
    }  # 0.0 stays a float
    assert config.CHOICES == OLD_CHOICES and config.RANGES == OLD_RANGES
    assert all(f.metadata["help"] for s in config.SECTIONS for f in config.fields(s))


def attrs_asdict(instance):
    import attrs

    return attrs.asdict(instance)


def test_finetune_settings_and_homography_guidance_take_the_schema_defaults():
    import attrs

    from cammimic import config
    from cammimic.guidance import HomographyGuidance, homography_guidance
    from cammimic.training import FinetuneSettings

    settings = attrs.asdict(FinetuneSettings())
    assert settings.pop("seed") == OLD_DEFAULTS["run"]["seed"]
    assert settings == OLD_DEFAULTS["finetune"] == config.DEFAULTS["finetune"]
    assert FinetuneSettings.from_config(load_config()) == FinetuneSettings()
    # the guidance term's parameters: the defaults (since issue 22 it acts on x̂₀, with λ_G 0.3 as strong as the
    # old 0.02 on z_t under DDIM), and the factory's ranges and choices from them
    assert homography_guidance() == HomographyGuidance(
        weight=0.3, start=0.0, end=1.0, masked=True, compare="latents", acts_on="x0"
    )
    for kwargs, message in [
        (
            {"weight": 0.51},
            "homography guidance weight 0.51 is outside [0, 0.5]; 0.5 already replaces x̂₀ (or z_t) by z_P "
            "at every step",
        ),
        (
            {"start": 0.6, "end": 0.5},
            "homography guidance needs 0 <= start <= end <= 1, got start=0.6, end=0.5",
        ),
        (
            {"compare": "latent"},
            "homography guidance compare 'latent' is unknown. Try one of ['latents', 'noised']",
        ),
    ]:
        with pytest.raises(CammimicError) as e:
            homography_guidance(**kwargs)
        assert str(e.value) == message
    assert (
        homography_guidance(weight=0.5, start=1.0, end=1.0).weight == 0.5
    )  # the bounds are closed


def test_every_setting_has_a_command_line_option_or_is_config_only():
    from cammimic import cli, config

    with_option = {
        f"{s}.{f.name}" for s in config.SECTIONS for f in config.fields(s) if f.metadata["option"]
    }
    everything = {f"{s}.{k}" for s, t in config.DEFAULTS.items() for k in t}
    assert everything - with_option == CONFIG_ONLY
    # each such option is on some command, and overrides the setting it claims to
    on_commands = {
        p.setting
        for c in cli.cli.commands.values()
        for p in c.params
        if getattr(p, "setting", None)
    }
    assert with_option | set(config.COMPONENT_OPTIONS) == on_commands


def test_the_derived_override_map_is_the_old_hand_kept_one():
    from cammimic.cli import _overrides

    # cli._overrides as it was written by hand, plus the overrides `sample` and `score` applied on their own
    old = {
        "prompt": "run.prompt",
        "reference_prompt": "run.reference_prompt",
        "frames": "run.frames",
        "width": "run.width",
        "height": "run.height",
        "fps": "run.fps",
        "seed": "run.seed",
        "device": "run.device",
        "dtype": "run.dtype",
        "estimator": "motion_estimator.name",
        "fill": "homography.fill",
        "backbone": "backbone.name",
        "stage1_steps": "finetune.stage1_steps",
        "stage2_steps": "finetune.stage2_steps",
        "lr": "finetune.learning_rate",
        "spatial_rank": "lora.spatial_rank",
        "temporal_rank": "lora.temporal_rank",
        "gradient_checkpointing": "finetune.gradient_checkpointing",
        "steps": "sampling.steps",
        "guidance_scale": "sampling.guidance_scale",
        "scheduler": "sampling.scheduler",
        "gif": "output.gif",
        "spatial_scale": "sampling.spatial_scale",
        "temporal_scale": "sampling.temporal_scale",
        "variant": "score.variant",
        "method": "run.method",
        "weights": "backbone.weights",
        "motion_strength": "motion.strength",
        "motion_speed": "motion.speed",
        "motion_smooth": "motion.smooth",
        "noise": "noise.name",
        "candidates": "run.candidates",
        "window_overlap": "sampling.window_overlap",  # issue 25 §4
    }
    flags = {
        "gradient_checkpointing": True,
        "gif": True,
        "no_stage2": True,
        "no_ortho": True,
        "motion_reverse": True,
    }  # click gives True
    kw = {name: f"value of {name}" for name in old} | flags
    expected = {key: kw[name] for name, key in old.items()}
    assert _overrides(kw) == expected | {
        "finetune.stage2": False,
        "finetune.orthogonality": False,
        "motion.reverse": True,
    }
    # unset options (None, or a flag not given) override nothing
    assert set(_overrides({"no_stage2": None, "gif": None}).values()) == {None}


def test_defaults_the_help_states_are_the_schema_defaults():
    import re

    from cammimic import cli, config

    # settings whose default (0 or "auto") means "decided at run time", which the help spells out
    described = {
        "run.frames",
        "run.width",
        "run.height",
        "run.fps",
        "run.device",
        "run.dtype",
        "run.method",
        "sampling.steps",
        "sampling.guidance_scale",
    }  # the backbone's (issue 22 §3)
    checked = set()
    for command in cli.cli.commands.values():
        for param in command.params:
            dotted = getattr(param, "setting", None)
            if not dotted or dotted in described or dotted in config.COMPONENT_OPTIONS:
                continue
            m = re.search(r"default:? ([\w.+-]+)", param.help)
            if m is None:
                continue
            default = config.field(dotted).default
            stated = m[1].rstrip(".")
            if stated == "the":  # "default: the config's" (eval): defers to the file
                continue
            assert (float(stated) if not isinstance(default, str) else stated) == default, (
                dotted,
                param.help,
            )
            checked.add(dotted)
    assert {
        "finetune.stage1_steps",
        "finetune.learning_rate",
        "lora.spatial_rank",
        "sampling.spatial_scale",
        "sampling.scheduler",
        "score.variant",
        "run.seed",
    } <= checked


def test_docs_config_md_is_the_schema(tmp_path):
    from pathlib import Path

    from cammimic.config_docs import main, render

    docs = Path(__file__).resolve().parents[1] / "docs" / "config.md"
    text = docs.read_text(encoding="utf-8")
    assert render(text) == text, (
        "docs/config.md disagrees with the schema: run python -m cammimic.config_docs"
    )
    for section in (
        "run",
        "lora",
        "finetune",
        "sampling",
        "homography",
        "score",
        "output",
        "plugins",
    ):
        assert f"<!-- generated: [{section}] -->" in text
    assert "| `--lr` | `finetune.learning_rate` | `finetune`, `run` |" in text
    # the check catches a stale default and rewrites it from the schema
    stale = tmp_path / "config.md"
    stale.write_text(
        text.replace("| `crf` | `18` | 0–51 |", "| `crf` | `23` | 0–51 |"), encoding="utf-8"
    )
    assert main(["--check", str(stale)]) == 1
    assert main([str(stale)]) == 0 and stale.read_text(encoding="utf-8") == text
    assert main(["--check", str(docs)]) == 0


def test_a_huge_text_setting_is_refused_in_one_line(tmp_path):
    """A 50 MB prompt never reaches config.toml or run.json: the config refuses it, naming the setting."""
    from cammimic.config import MAX_TEXT_SETTING, load_config
    from cammimic.errors import CammimicError

    ok = load_config().with_overrides({"run.prompt": "a" * MAX_TEXT_SETTING})
    assert len(ok["run"]["prompt"]) == MAX_TEXT_SETTING
    with pytest.raises(
        CammimicError,
        match=r"^\[run\] prompt \(command line\) is 50000000 characters long; at most 10000",
    ):
        load_config().with_overrides({"run.prompt": "a" * 50_000_000})
    (tmp_path / "c.toml").write_text('[run]\nreference_prompt = "' + "b" * 20_000 + '"\n')
    with pytest.raises(
        CammimicError, match=r"reference_prompt in .*c\.toml is 20000 characters long"
    ):
        load_config(tmp_path / "c.toml")
