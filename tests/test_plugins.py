"""The plugin host: loading (entry points faked), selection, errors, and every hook."""

from __future__ import annotations

import json
import subprocess
import sys
import types

import pytest

import cammimic
from cammimic.components import AttentionLayers, GuidanceState
from cammimic.errors import CammimicError
from cammimic.plugins import ENV_LOAD_PLUGINS, PluginHost


class FakeDist:
    def __init__(self, name, version):
        self.name, self.version = name, version


class FakeEntryPoint:
    """Stands in for an installed package's ``[project.entry-points.cammimic]`` entry."""

    def __init__(self, name, module=None, *, dist="cammimic-fake", version="1.2.3", error=None):
        self.name, self.value, self.dist = (
            name,
            f"{dist.replace('-', '_')}:{name}",
            FakeDist(dist, version),
        )
        self.module, self.error = module, error

    def load(self):
        if self.error:
            raise self.error
        return self.module


def backbone_plugin(name="tiny", layers=None):
    """A third-party backbone adapter plugin, as a module object."""
    mod = types.ModuleType(f"cammimic_{name}")

    class Adapter:
        default_weights = "/weights"
        default_size = (64, 64)
        default_num_frames = 8
        vae_scale_factor = 8

        def __init__(self, rank):
            self.name, self.rank = name, rank

        def load(self, weights, **kwargs):
            return {"weights": weights, **kwargs}

    def factory(*, rank: int = 4):
        return Adapter(rank)

    @cammimic.hookimpl
    def register_backbones(register):
        register(name, factory, description="a tiny test backbone", requires=("json",))

    @cammimic.hookimpl
    def locate_attention_layers(backbone, model, include_ff):
        if backbone != name:
            return None
        spatial = [n for n in model if ".attentions." in n and (include_ff or ".ff" not in n)]
        temporal = [n for n in model if ".temp_attentions." in n and (include_ff or ".ff" not in n)]
        return AttentionLayers(
            spatial=spatial, temporal=temporal, pairs=list(zip(spatial, temporal))
        )

    mod.register_backbones = register_backbones
    mod.locate_attention_layers = locate_attention_layers
    mod.__version__ = "0.0.1"
    return mod


@pytest.fixture
def host_with(monkeypatch):
    """Build a host whose entry points are exactly the given fake ones."""

    def make(*eps, env=None, block=()):
        if env is None:
            monkeypatch.delenv(ENV_LOAD_PLUGINS, raising=False)
        else:
            monkeypatch.setenv(ENV_LOAD_PLUGINS, env)
        host = PluginHost()
        monkeypatch.setattr(host, "entry_points", lambda: list(eps))
        return host.load(block=block)

    return make


def real_eps():
    return [ep for ep in PluginHost().entry_points() if ep.value.startswith("cammimic")]


def test_first_party_plugins_load_through_entry_points(plugin_host):
    names = {p["name"]: p for p in plugin_host.plugins()}
    assert {"opencv", "kornia", "cammimic.default_plugins"} <= set(names)
    assert names["opencv"]["distribution"] == "cammimic"
    assert names["opencv"]["version"] == cammimic.__version__
    assert names["opencv"]["hooks"] == ["register_motion_estimators"]
    assert names["opencv"]["motion_estimators"] == ["opencv"]
    assert names["kornia"]["motion_estimators"] == ["kornia"]
    assert names["cammimic.default_plugins"]["guidance_terms"] == ["homography", "none"]
    assert names["zeroscope"]["backbones"] == ["zeroscope"] and names["modelscope"][
        "backbones"
    ] == ["modelscope"]
    assert names["unet3d"]["hooks"] == ["locate_attention_layers"]


def test_third_party_backbone_is_selectable_with_params(host_with):
    host = host_with(FakeEntryPoint("tiny", backbone_plugin()))
    entry = next(p for p in host.plugins() if p["name"] == "tiny")
    assert entry["distribution"] == "cammimic-fake" and entry["version"] == "1.2.3"
    assert entry["hooks"] == ["locate_attention_layers", "register_backbones"]
    assert entry["backbones"] == ["tiny"]
    adapter = host.create("backbone", "tiny", {"rank": 16})
    assert adapter.rank == 16
    # its load returns a dict, not a Backbone: checked where the factory's object is used
    with pytest.raises(
        CammimicError,
        match=r'backbone "tiny" of plugin "tiny" load\(\) returned dict, not a '
        r"cammimic.components.Backbone \(missing ",
    ):
        adapter.load("/w", torch_dtype="float16")
    with pytest.raises(
        CammimicError, match=r"no parameter 'rnak' \(did you mean \"rank\"\?\); accepted: rank"
    ):
        host.create("backbone", "tiny", {"rnak": 16})
    with pytest.raises(CammimicError, match=r"'rank' must be int, got '16'"):
        host.create("backbone", "tiny", {"rank": "16"})


def test_unknown_component_names_valid_ones_and_nearest(plugin_host):
    with pytest.raises(CammimicError) as e:
        plugin_host.get("motion_estimator", "opencvv")
    msg = str(e.value)
    assert 'motion estimator "opencvv"' in msg and '(did you mean "opencv"?)' in msg
    assert "valid: kornia, opencv" in msg
    with pytest.raises(
        CammimicError,
        match='backbone "zeroscop" is unknown \\(did you mean "zeroscope"\\?\\); '
        "valid: mini, modelscope, wan, wan-i2v, zeroscope",
    ):
        plugin_host.get("backbone", "zeroscop")


def test_missing_extra_says_the_exact_pip_install(host_with):
    mod = types.ModuleType("cammimic_heavy")

    @cammimic.hookimpl
    def register_backbones(register):
        register(
            "heavy", lambda: None, requires=("json", "surely_not_installed_xyz"), extra="zeroscope"
        )

    mod.register_backbones = register_backbones
    host = host_with(FakeEntryPoint("heavy", mod))
    with pytest.raises(CammimicError) as e:
        host.create("backbone", "heavy")
    assert str(e.value) == (
        'backbone "heavy" needs surely_not_installed_xyz, which is not installed: pip install "cammimic[zeroscope]"'
    )
    listed = host.components("backbone")["heavy"].to_json()
    assert listed["available"] is False and listed["extra"] == "zeroscope"


def test_allow_list_from_the_environment(host_with):
    host = host_with(*real_eps(), env="opencv")
    names = {p["name"] for p in host.plugins()}
    assert "opencv" in names and "kornia" not in names
    assert "cammimic.default_plugins" in names  # defaults always load
    # by distribution name
    host = host_with(FakeEntryPoint("tiny", backbone_plugin()), *real_eps(), env="cammimic-fake")
    assert {p["name"] for p in host.plugins()} == {"cammimic.default_plugins", "tiny"}
    # empty: no entry points at all
    host = host_with(*real_eps(), env="")
    assert {p["name"] for p in host.plugins()} == {"cammimic.default_plugins"}


def test_block_list_from_config(host_with):
    host = host_with(*real_eps(), block=["kornia"])
    assert "kornia" not in host.components("motion_estimator")
    with pytest.raises(CammimicError, match='"kornia" is unknown'):
        host.get("motion_estimator", "kornia")
    # blocking after loading unregisters too
    host.load(block=["opencv"])
    assert host.components("motion_estimator") == {}


def test_broken_plugin_is_reported_and_the_rest_keep_working(host_with):
    broken = FakeEntryPoint(
        "broken", error=ModuleNotFoundError("No module named 'torchvision'"), dist="cammimic-broken"
    )
    host = host_with(broken, *real_eps())
    assert "opencv" in host.components("motion_estimator")
    entry = next(p for p in host.plugins() if p["name"] == "broken")
    assert entry["error"].startswith(
        'Error importing plugin "broken" (cammimic_broken:broken): ModuleNotFoundError'
    )
    assert "pip uninstall cammimic-broken" in entry["error"]
    assert '[plugins] block = ["broken"]' in entry["error"]


def test_duplicate_names_keep_first_party_warn_naming_both_and_let_the_user_choose(
    host_with, capsys
):
    """A third-party "opencv" registered before cammimic's own no longer breaks the default for everyone."""
    mod = types.ModuleType("cammimic_dupe")

    class Other:
        name = "other-opencv"

        def estimate(self, frames):
            raise AssertionError("not called")

    @cammimic.hookimpl
    def register_motion_estimators(register):
        register("opencv", Other)

    mod.register_motion_estimators = register_motion_estimators
    host = host_with(FakeEntryPoint("aa-dupe", mod), *real_eps())  # loads before "opencv"
    comp = host.get("motion_estimator", "opencv")
    assert comp.plugin == "opencv"
    warning = capsys.readouterr().err.strip().splitlines()
    message = (
        'motion estimator "opencv" is registered by both plugin "aa-dupe" and plugin "opencv"; using the one '
        'from "opencv" (cammimic’s own wins); select the other as "aa-dupe:opencv"'
    )
    assert len(warning) == 1 and warning[0].startswith("warning: " + message)
    host.get("motion_estimator", "opencv")
    assert capsys.readouterr().err == ""  # warned once
    assert host.get("motion_estimator", "aa-dupe:opencv").plugin == "aa-dupe"
    assert host.create("motion_estimator", "aa-dupe:opencv").name == "other-opencv"
    # two third-party plugins: the first registered wins
    twin = types.ModuleType("cammimic_dupe2")
    twin.register_motion_estimators = register_motion_estimators
    host = host_with(FakeEntryPoint("aa-dupe", mod), FakeEntryPoint("bb-dupe", twin))
    assert host.get("motion_estimator", "opencv").plugin == "aa-dupe"
    problems = []
    assert "bb-dupe" in {p["name"] for p in host.plugins(problems)}
    assert len(problems) == 1 and '"bb-dupe:opencv"' in problems[0]


def test_plugin_exiting_or_interrupting_at_import_is_that_plugins_problem(host_with):
    class Exits(FakeEntryPoint):
        def load(self):
            raise SystemExit(0)

    class Interrupts(FakeEntryPoint):
        def load(self):
            raise KeyboardInterrupt

    host = host_with(Exits("exits", dist="cammimic-exits"), Interrupts("interrupts"), *real_eps())
    errors = {p["name"]: p.get("error") for p in host.plugins()}
    assert errors["exits"].startswith(
        'Error importing plugin "exits" (cammimic_exits:exits): SystemExit: 0.'
    )
    assert (
        errors["interrupts"].startswith('Error importing plugin "interrupts"')
        and "KeyboardInterrupt" in errors["interrupts"]
    )
    assert "opencv" in host.components("motion_estimator")


def test_a_real_ctrl_c_while_plugins_load_still_stops(host_with):
    import os
    import signal
    import time

    class Slow(FakeEntryPoint):
        def load(self):
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(2)

    with pytest.raises(KeyboardInterrupt):
        host_with(Slow("slow"))
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # handler restored


def test_exiting_plugin_in_a_real_process_does_not_end_the_command(tmp_path):
    """`cammimic motion` with a plugin calling sys.exit(0) at import: exit 0 *with* output, one warning."""
    pkg = tmp_path / "site"
    (pkg / "cammimic_exit_plugin-0.1.dist-info").mkdir(parents=True)
    (pkg / "cammimic_exit_plugin.py").write_text("import sys\nsys.exit(0)\n")
    info = pkg / "cammimic_exit_plugin-0.1.dist-info"
    (info / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: cammimic-exit-plugin\nVersion: 0.1\n"
    )
    (info / "entry_points.txt").write_text("[cammimic]\nexiter = cammimic_exit_plugin\n")
    env = {**__import__("os").environ, "PYTHONPATH": str(pkg)}
    env.pop("CAMMIMIC_LOAD_PLUGINS", None)
    root = __import__("pathlib").Path(__file__).resolve().parents[1]
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "cammimic",
            "motion",
            str(root / "examples" / "reference.mp4"),
            "--frames",
            "3",
        ],
        capture_output=True,
        text=True,
        env=env,
    )
    assert out.returncode == 0 and "3 frames at 384x256" in out.stdout, out.stderr
    assert out.stderr.startswith(
        'warning: Error importing plugin "exiter" (cammimic_exit_plugin): SystemExit: 0.'
    )


def test_bad_registrations_lose_only_themselves(host_with, capsys):
    mod = types.ModuleType("cammimic_sloppy")

    class Est:
        name = "fine"

        def estimate(self, frames):
            raise AssertionError

    @cammimic.hookimpl
    def register_motion_estimators(register):
        register("broken", "not a factory")
        register(42, Est)
        register("fine", Est)

    @cammimic.hookimpl
    def register_backbones(register):
        raise SystemExit("boom")

    mod.register_motion_estimators = register_motion_estimators
    mod.register_backbones = register_backbones
    host = host_with(FakeEntryPoint("sloppy", mod), *real_eps())
    problems = []
    listed = {p["name"]: p for p in host.plugins(problems)}  # documented as never raising
    assert listed["sloppy"]["motion_estimators"] == ["fine"]
    assert any(
        "plugin \"sloppy\" registered motion estimator 'broken' with a non-callable factory (str)"
        in p
        for p in problems
    )
    assert any('plugin "sloppy" registered an invalid name 42' in p for p in problems)
    assert any(
        'plugin "sloppy" failed in register_backbones: SystemExit: boom' in p for p in problems
    )
    # unrelated commands keep working
    assert host.get("motion_estimator", "opencv").plugin == "opencv"
    assert host.get("backbone", "zeroscope").plugin == "zeroscope"
    assert "non-callable" in capsys.readouterr().err


def _estimator_plugin(result):
    mod = types.ModuleType("cammimic_liar")

    class Liar:
        name = "liar"

        def estimate(self, frames):
            return result(frames)

    @cammimic.hookimpl
    def register_motion_estimators(register):
        register("liar", Liar)

    mod.register_motion_estimators = register_motion_estimators
    return FakeEntryPoint("liar", mod)


@pytest.mark.parametrize(
    "result, why",
    [
        (lambda f: None, "returned NoneType, not a cammimic.motion.MotionEstimate"),
        (
            lambda f: __import__("cammimic").motion.MotionEstimate(
                __import__("numpy").tile(__import__("numpy").eye(3), (2, 1, 1)), 8, 8, "liar"
            ),
            "returned 2 homographies for 4 frames, not 3",
        ),
        (
            lambda f: __import__("cammimic").motion.MotionEstimate(
                __import__("numpy").full((3, 3, 3), float("nan")), 8, 8, "liar"
            ),
            "returned non-finite homographies (NaN or inf) for frame pair 0",
        ),
        (lambda f: 1 / 0, 'failed in motion estimator "liar".estimate: ZeroDivisionError'),
    ],
)
def test_estimator_outputs_are_checked_at_the_contract_boundary(host_with, result, why):
    import numpy as np

    host = host_with(_estimator_plugin(result))
    with pytest.raises(CammimicError) as info:
        cammimic.estimate_motion(np.zeros((4, 8, 8, 3), np.uint8), estimator="liar", host=host)
    text = str(info.value)
    assert why in text and 'plugin "liar"' in text and "\n" not in text


def test_factory_returning_nothing_names_the_plugin(host_with):
    mod = types.ModuleType("cammimic_empty")

    @cammimic.hookimpl
    def register_backbones(register):
        register("empty", lambda: None)

    mod.register_backbones = register_backbones
    host = host_with(FakeEntryPoint("empty", mod))
    with pytest.raises(
        CammimicError, match=r'the factory of backbone "empty" \(plugin "empty"\) returned None'
    ):
        host.create("backbone", "empty")


def test_misspelt_hook_fails_loudly(host_with):
    mod = types.ModuleType("cammimic_typo")

    @cammimic.hookimpl
    def register_motion_estimator(register):  # missing "s"
        pass

    mod.register_motion_estimator = register_motion_estimator
    host = host_with(FakeEntryPoint("typo", mod), *real_eps())
    entry = next(p for p in host.plugins() if p["name"] == "typo")
    assert entry["error"].startswith(
        'plugin "typo" implements unknown hook "register_motion_estimator" '
        '(did you mean "register_motion_estimators"?)'
    )
    assert '[plugins] block = ["typo"]' in entry["error"]
    assert "typo" not in {p["name"] for p in host.plugins() if not p.get("error")}
    assert "opencv" in host.components("motion_estimator")  # the rest keep working


def test_hookimpl_with_a_wrong_argument_is_rejected(host_with):
    mod = types.ModuleType("cammimic_badargs")

    @cammimic.hookimpl
    def register_backbones(register, extra_argument):
        pass

    mod.register_backbones = register_backbones
    host = host_with(FakeEntryPoint("badargs", mod))
    assert "badargs" in {p["name"] for p in host.plugins() if p.get("error")}


def test_locate_attention_layers_answers_per_backbone(host_with):
    model = [
        "down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q",
        "down_blocks.0.attentions.0.transformer_blocks.0.ff.net.0.proj",
        "down_blocks.0.temp_attentions.0.transformer_blocks.0.attn1.to_q",
        "down_blocks.0.temp_attentions.0.transformer_blocks.0.ff.net.0.proj",
    ]
    # a plugin for another backbone answers None and does not stop the search
    host = host_with(
        FakeEntryPoint("other", backbone_plugin("other")),
        FakeEntryPoint("tiny", backbone_plugin("tiny")),
    )
    layers = host.locate_attention_layers("tiny", model, include_ff=False)
    assert layers.spatial == (model[0],) and layers.temporal == (model[2],)
    assert layers.pairs == ((model[0], model[2]),)
    with_ff = host.locate_attention_layers("tiny", model, include_ff=True)
    assert len(with_ff.spatial) == 2 and len(with_ff.temporal) == 2
    with pytest.raises(
        CammimicError, match='no plugin locates the attention layers of backbone "nobody"'
    ):
        host.locate_attention_layers("nobody", model)


def test_a_backbones_own_plugin_locates_its_layers_before_the_generic_unet3d(host_with):
    """A third-party backbone on a diffusers UNet3D was silently shadowed by the generic answer."""

    class UNet3DConditionModel(list):  # what the generic unet3d locator recognises by name
        pass

    model = UNet3DConditionModel(
        [
            "down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q",
            "down_blocks.0.temp_attentions.0.transformer_blocks.0.attn1.to_q",
        ]
    )
    host = host_with(FakeEntryPoint("aa-myunet", backbone_plugin("myunet")), *real_eps())
    # the generic locators (unet3d, wan: trylast) come last
    assert host.attention_locators("myunet") == ["aa-myunet", "unet3d", "wan"]
    assert host.attention_locators("zeroscope") == ["aa-myunet", "unet3d", "wan"]
    assert host.attention_locators("wan") == ["wan", "aa-myunet", "unet3d"]  # its own plugin first
    layers = host.locate_attention_layers("myunet", model)
    assert layers.spatial == (model[0],) and host.located_by["myunet"] == "aa-myunet"
    listed = {c["name"]: c for p in host.plugins() for c in p.get("components", [])}
    assert listed["myunet"]["attention_layers_from"] == ["aa-myunet", "unet3d", "wan"]
    assert listed["zeroscope"]["attention_layers_from"] == ["aa-myunet", "unet3d", "wan"]


def test_attention_layers_validate():
    with pytest.raises(ValueError, match="both spatial and temporal"):
        AttentionLayers(spatial=["a"], temporal=["a"])
    with pytest.raises(ValueError, match="outside"):
        AttentionLayers(spatial=["a"], temporal=["b"], pairs=[("a", "c")])
    # a video transformer's attention serves space and time: both LoRAs on one layer, if asked
    shared = AttentionLayers(spatial=["a", "b"], temporal=["a"], pairs=[("a", "a")], shared=True)
    assert shared.to_json() == {
        "spatial": ["a", "b"],
        "temporal": ["a"],
        "pairs": [["a", "a"]],
        "shared": True,
    }
    assert "shared" not in AttentionLayers(spatial=["a"], temporal=["b"]).to_json()
    with pytest.raises(ValueError, match="outside"):
        AttentionLayers(spatial=["a"], temporal=["a"], pairs=[("a", "b")], shared=True)


def test_guidance_terms(host_with):
    mod = types.ModuleType("cammimic_pull")

    class Pull:
        name = "pull"

        def __init__(self, weight):
            self.weight = weight

        def apply(self, latents, state):
            return [z - self.weight * 2 * (z - t) for z, t in zip(latents, state.target)]

    @cammimic.hookimpl
    def register_guidance_terms(register):
        register("pull", lambda *, weight=0.1: Pull(weight))

    mod.register_guidance_terms = register_guidance_terms
    first_party = set(
        host_with(*real_eps()).components("guidance")
    )  # camerascore, motionclone, ... too
    assert {"homography", "none"} <= first_party and "pull" not in first_party
    host = host_with(*real_eps(), FakeEntryPoint("pull", mod))
    assert set(host.components("guidance")) == first_party | {"pull"}
    state = GuidanceState(step=0, num_steps=10, timestep=999, target=[0.0, 1.0])
    none = host.create("guidance", "none")
    z = [1.0, 1.0]
    assert none.apply(z, state) is z
    assert host.create("guidance", "pull", {"weight": 0.25}).apply(z, state) == [0.5, 1.0]


def test_cli_lists_plugins_as_json():
    out = subprocess.run(
        [sys.executable, "-m", "cammimic", "plugins", "--json"], capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    items = {p["name"]: p for p in json.loads(out.stdout)}
    assert items["opencv"]["motion_estimators"] == ["opencv"]
    assert items["kornia"]["hooks"] == ["register_motion_estimators"]
    text = subprocess.run(
        [sys.executable, "-m", "cammimic", "plugins"], capture_output=True, text=True
    ).stdout
    assert "opencv (cammimic " in text and "motion estimator opencv: SIFT" in text


def test_imports_stay_light():
    code = (
        "import sys, cammimic, cammimic_opencv, cammimic_kornia, cammimic_zeroscope, cammimic_modelscope,"
        " cammimic_unet3d, cammimic.plugins, cammimic.config;"
        "cammimic.plugins.get_host();"
        "heavy = [m for m in ('torch', 'kornia', 'cv2', 'av', 'diffusers', 'transformers', 'peft', 'matplotlib')"
        " if m in sys.modules];"
        "assert not heavy, heavy"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr


def test_the_component_table_is_built_once_through_pluggy(host_with):
    calls = []
    mod = backbone_plugin("counted")

    @cammimic.hookimpl
    def register_backbones(register):
        calls.append(1)
        register("counted", lambda: None, description="counted")

    mod.register_backbones = register_backbones
    host = host_with(FakeEntryPoint("counted", mod), *real_eps())
    for _ in range(3):  # lookups, creation and listing reuse one table
        assert host.get("backbone", "counted").plugin == "counted"
        assert "zeroscope" in host.components("backbone")
        host.attention_locators("zeroscope")
    host.plugins()
    assert len(calls) == 1
    host.components("backbone").clear()  # a caller's copy: the table is not touched
    assert "counted" in host.components("backbone") and len(calls) == 1
    # a plugin registered later is seen (the table is rebuilt once), and attribution holds
    host.register(backbone_plugin("late"), name="late")
    assert host.get("backbone", "late").plugin == "late" and len(calls) == 2
    assert host.get("backbone", "counted").plugin == "counted" and len(calls) == 2
    host.unregister("late")
    with pytest.raises(CammimicError, match='backbone "late" is unknown'):
        host.get("backbone", "late")
