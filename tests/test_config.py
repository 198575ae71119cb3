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
    assert (c["finetune"]["stage1_steps"], c["finetune"]["stage2_steps"], c["finetune"]["learning_rate"]) == (150, 150, 5e-4)


def test_an_empty_guidance_list_survives_the_round_trip(tmp_path):
    c = load_config().with_overrides({"guidance": []})
    assert c["guidance"] == []
    path = tmp_path / "c.toml"
    path.write_text(c.to_toml())
    assert load_config(path)["guidance"] == []
    two = load_config().with_overrides({"guidance": [{"name": "homography", "weight": 0.1}, {"name": "none"}]})
    path.write_text(two.to_toml())
    assert load_config(path)["guidance"] == [{"name": "homography", "weight": 0.1}, {"name": "none"}]


def test_file_selects_components_with_parameters(tmp_path):
    c = load_config(write(tmp_path, """
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
"""))
    assert c["run"]["frames"] == 16 and c["homography"]["fill"] == "reflect"
    assert c.component("motion_estimator") == ("opencv", {"ratio": 0.7})
    assert c["guidance"] == [{"name": "none"}]


@pytest.mark.parametrize(
    "text, message",
    [
        ("[run]\nframe = 16\n", "unknown key 'frame' in [run] in {p} (did you mean \"frames\"?); accepted: method, prompt, reference_prompt, frames"),
        ("[runn]\n", "unknown section [runn] in {p} (did you mean \"run\"?)"),
        ("[run]\nframes = \"16\"\n", "[run] frames in {p} must be an integer, got '16'"),
        ("[run]\nframes = true\n", "[run] frames in {p} must be an integer, got True"),
        ("[run]\nframes = -1\n", "[run] frames in {p} = -1 is out of range [0, 1000]"),
        ("[homography]\nfill = \"blak\"\n", "[homography] fill in {p} = 'blak' is unknown (did you mean \"black\"?)"),
        ("[motion_estimator]\nratio = 0.7\n", "[motion_estimator] in {p} needs name = \"...\""),
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
    c = load_config(write(tmp_path, '[run]\nframes = 16\n[motion_estimator]\nname = "opencv"\nratio = 0.7\n'))
    o = c.with_overrides({"run.frames": 8, "run.width": None, "motion_estimator.name": "kornia"})
    assert o["run"]["frames"] == 8 and o["run"]["width"] == 0
    assert o.component("motion_estimator") == ("kornia", {})
    assert c["run"]["frames"] == 16  # the original is untouched
    same = c.with_overrides({"motion_estimator.name": "opencv"})
    assert same.component("motion_estimator") == ("opencv", {"ratio": 0.7})
    with pytest.raises(CammimicError, match=r"\[run\] seed \(command line\) = -3 is out of range"):
        c.with_overrides({"run.seed": -3})
    with pytest.raises(CammimicError, match=r"unknown setting 'homography.fil' \(did you mean \"homography.fill\"\?\)"):
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
    with pytest.raises(CammimicError, match=r"has no parameter 'ratoi' \(did you mean \"ratio\"\?\); accepted: detector"):
        plugin_host.create("motion_estimator", name, params)
