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
    weight = 0.02

    [lora]                    # the spatial and temporal LoRAs
    [finetune]                # Phase 1: stage 1 (reference video) and stage 2 (user image)
    [sampling]                # Phase 2: the denoising loop
    [homography]
    [score]
    [output]
    [plugins]

docs/config.md lists every key with its default and meaning.
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

__all__ = ["Config", "load_config", "DEFAULTS"]

METHODS = ("cammimic", "homography")

#: Plain settings: section -> key -> default (the default's type is the accepted type).
DEFAULTS: dict[str, dict[str, Any]] = {
    "run": {
        "method": "cammimic", "prompt": "", "reference_prompt": "", "frames": 0, "width": 0, "height": 0,
        "fps": 0.0, "seed": 0, "device": "auto", "dtype": "auto",
    },
    "lora": {"spatial_rank": 32, "temporal_rank": 32, "alpha": 0.0, "dropout": 0.0, "include_ff": False, "token": "sks"},
    "finetune": {
        "stage1_steps": 150, "stage2_steps": 150, "learning_rate": 5e-4, "spatial_weight": 0.5,
        "spatial_mask_probability": 0.2, "temporal_debias": False, "stage2": True, "orthogonality": True,
        "orthogonality_weight": 0.4, "orthogonality_definition": "subspace", "max_grad_norm": 1.0,
        "checkpoint_every": 50, "gradient_checkpointing": False,
    },
    "sampling": {
        "steps": 50, "guidance_scale": 9.0, "scheduler": "ddim", "negative_prompt": "", "eta": 0.0,
        "spatial_scale": 1.0, "temporal_scale": 1.0,
    },
    "homography": {"fill": "black"},
    "score": {"variant": "resolution_free", "max_fallback_share": 0.25},
    "output": {"gif": False, "crf": 18},
    "plugins": {"block": []},
}
#: Component sections: one table, or (guidance) a list of tables; each names a component.
COMPONENT_DEFAULTS: dict[str, Any] = {
    "motion_estimator": {"name": "opencv"},
    "backbone": {"name": "zeroscope"},
    "guidance": [{"name": "homography"}],
}
CHOICES: dict[tuple[str, str], tuple[str, ...]] = {
    ("run", "method"): METHODS,
    ("homography", "fill"): ("black", "reflect", "replicate"),
    ("score", "variant"): ("resolution_free", "paper"),
    ("run", "dtype"): ("auto", "float32", "float16", "bfloat16"),
    ("finetune", "orthogonality_definition"): ("cosine", "inner", "subspace"),
    ("sampling", "scheduler"): ("ddim", "dpm"),
}
RANGES: dict[tuple[str, str], tuple[float, float]] = {
    ("run", "frames"): (0, 1000),
    ("run", "width"): (0, 8192),
    ("run", "height"): (0, 8192),
    ("run", "fps"): (0, 240),
    ("run", "seed"): (0, 2**63 - 1),
    ("output", "crf"): (0, 51),
    ("lora", "spatial_rank"): (1, 1024),
    ("lora", "temporal_rank"): (1, 1024),
    ("lora", "alpha"): (0, 1e6),
    ("lora", "dropout"): (0, 0.9),
    ("finetune", "stage1_steps"): (0, 1_000_000),
    ("finetune", "stage2_steps"): (0, 1_000_000),
    ("finetune", "learning_rate"): (0, 1),
    ("finetune", "spatial_weight"): (0, 1e3),
    ("finetune", "spatial_mask_probability"): (0, 1),
    ("finetune", "orthogonality_weight"): (0, 1e6),
    ("finetune", "max_grad_norm"): (0, 1e6),
    ("finetune", "checkpoint_every"): (0, 1_000_000),
    ("score", "max_fallback_share"): (0, 1),
    ("sampling", "steps"): (1, 999),  # DDIM on a 1000-step schedule with steps_offset 1 takes at most 999
    ("sampling", "guidance_scale"): (0, 100),
    ("sampling", "eta"): (0, 1),
    ("sampling", "spatial_scale"): (-10, 10),
    ("sampling", "temporal_scale"): (-10, 10),
}


def _did_you_mean(name: str, choices) -> str:
    close = difflib.get_close_matches(name, list(choices), n=1, cutoff=0.5)
    return f' (did you mean "{close[0]}"?)' if close else ""


def _type_name(value) -> str:
    return {bool: "true/false", int: "an integer", float: "a number", str: "a string", list: "a list"}[type(value)]


def _check_value(section: str, key: str, value: Any, where: str) -> Any:
    default = DEFAULTS[section][key]
    expected = type(default)
    ok = isinstance(value, expected) and not (expected is int and isinstance(value, bool))
    if expected is float and isinstance(value, int) and not isinstance(value, bool):
        value, ok = float(value), True
    if not ok:
        raise CammimicError(f"[{section}] {key}{where} must be {_type_name(default)}, got {value!r}")
    if (section, key) in CHOICES and value not in CHOICES[section, key]:
        choices = CHOICES[section, key]
        raise CammimicError(
            f"[{section}] {key}{where} = {value!r} is unknown{_did_you_mean(value, choices)}; "
            f"try one of {list(choices)}"
        )
    if (section, key) in RANGES:
        lo, hi = RANGES[section, key]
        if not lo <= value <= hi:
            raise CammimicError(f"[{section}] {key}{where} = {value!r} is out of range [{lo}, {hi}]")
    return value


def _check_component(section: str, table: Any, where: str) -> dict[str, Any]:
    if not isinstance(table, dict):
        raise CammimicError(f"[{section}]{where} must be a table with a name, got {table!r}")
    if "name" not in table or not isinstance(table["name"], str):
        raise CammimicError(f'[{section}]{where} needs name = "..." (see `cammimic plugins` for names)')
    return dict(table)


@attrs.define
class Config:
    """A validated configuration. ``data`` holds every section, defaults filled in."""

    data: dict[str, Any]
    source: str | None = None  #: the file it came from, for messages

    @property
    def where(self) -> str:
        return f" in {self.source}" if self.source else ""

    def __getitem__(self, section: str) -> Any:
        return self.data[section]

    def component(self, section: str) -> tuple[str, dict[str, Any]]:
        """``(name, params)`` of a single-component section such as ``motion_estimator``."""
        if self.data[section] is None:
            raise CammimicError(f'no [{section}] is selected; add [{section}] name = "..." to your config')
        table = dict(self.data[section])
        return table.pop("name"), table

    def with_overrides(self, overrides: dict[str, Any]) -> Config:
        """A copy with ``{"section.key": value}`` overrides applied (``None`` values are skipped).

        ``"motion_estimator.name"`` selects another component and drops the file's parameters
        for the old one.
        """
        data = copy.deepcopy(self.data)
        for dotted, value in overrides.items():
            if value is None:
                continue
            if dotted == "guidance":  # the whole list of terms
                items = value if isinstance(value, list) else [value]
                data["guidance"] = [_check_component("guidance", t, " (command line)") for t in items]
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
                    f"unknown setting '{dotted}'{_did_you_mean(dotted, known)}; accepted: {', '.join(known)}"
                )
            else:
                data[section][key] = _check_value(section, key, value, " (command line)")
        return Config(data, self.source)

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
                f"unknown section [{section}]{where}{_did_you_mean(section, accepted_sections)}; "
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
                    f"unknown key '{key}' in [{section}]{where}{_did_you_mean(key, accepted)}; "
                    f"accepted: {', '.join(accepted)}"
                )
            data[section][key] = _check_value(section, key, value, where)
    return Config(data, source)


#: Deepest nesting of tables and arrays a config file may have (cammimic's need 3).
MAX_DEPTH = 8


def _depth(value) -> int:
    """Nesting depth of tables and arrays, without recursion."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, level = stack.pop()
        deepest = max(deepest, level)
        children = item.values() if isinstance(item, dict) else item if isinstance(item, list) else ()
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
