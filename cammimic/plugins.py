"""The plugin host: loading plugins and the name -> factory tables of components.

Loading order: cammimic's default plugins, then every entry point of the group ``cammimic``
(first-party plugins register there too, exactly like third-party ones). The environment
variable ``CAMMIMIC_LOAD_PLUGINS`` (comma-separated entry-point or distribution names; empty
for none) limits which entry points load; the config's ``[plugins] block = [...]`` blocks by
name. A plugin that fails to import is reported by name and the rest keep working.
"""

from __future__ import annotations

import difflib
import importlib.util
import inspect
import os
import sys
from collections.abc import Callable, Iterable
from importlib import import_module, metadata
from typing import Any

import attrs
import pluggy

from cammimic import hookspecs
from cammimic._version import __version__
from cammimic.errors import CammimicError

ENTRY_POINT_GROUP = "cammimic"
ENV_LOAD_PLUGINS = "CAMMIMIC_LOAD_PLUGINS"
DEFAULT_PLUGINS: tuple[str, ...] = ("cammimic.default_plugins",)


@attrs.frozen
class Kind:
    """A kind of selectable component and the hook that registers it."""

    key: str  #: config section / internal key
    hook: str  #: the register hook
    label: str  #: for messages
    plural: str  #: key in plugin listings


KINDS: dict[str, Kind] = {
    k.key: k
    for k in (
        Kind("backbone", "register_backbones", "backbone", "backbones"),
        Kind("motion_estimator", "register_motion_estimators", "motion estimator", "motion_estimators"),
        Kind("guidance", "register_guidance_terms", "guidance term", "guidance_terms"),
        Kind("eval_method", "register_eval_methods", "eval method", "eval_methods"),
        Kind("eval_metric", "register_eval_metrics", "eval metric", "eval_metrics"),
    )
}


@attrs.frozen
class Component:
    """A registered component: its name, factory and who provided it."""

    kind: str
    name: str
    factory: Callable[..., Any]
    plugin: str
    description: str = ""
    requires: tuple[str, ...] = ()
    extra: str | None = None

    @property
    def label(self) -> str:
        return f'{KINDS[self.kind].label} "{self.name}"'

    def parameters(self) -> dict[str, Any]:
        """The factory's keyword parameters and their defaults (what the config may set)."""
        out = {}
        for p in inspect.signature(self.factory).parameters.values():
            if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD):
                out[p.name] = None if p.default is p.empty else p.default
        return out

    def missing_requirements(self) -> list[str]:
        return [m for m in self.requires if importlib.util.find_spec(m) is None]

    def install_hint(self) -> str:
        if self.extra:
            return f'pip install "cammimic[{self.extra}]"'
        return f'install the package that provides it (see `cammimic plugins` for plugin "{self.plugin}")'

    def create(self, params: dict[str, Any] | None = None, *, where: str = "") -> Any:
        """Check requirements and parameters, then call the factory."""
        params = dict(params or {})
        missing = self.missing_requirements()
        if missing:
            raise CammimicError(
                f"{self.label}{where} needs {', '.join(missing)}, which is not installed: {self.install_hint()}"
            )
        accepted = self.parameters()
        for key, value in list(params.items()):
            if key not in accepted:
                raise CammimicError(
                    f"{self.label}{where} has no parameter '{key}'"
                    f"{_did_you_mean(key, accepted)}; accepted: {', '.join(accepted) or 'none'}"
                )
            params[key] = _coerce(value, accepted[key], f"{self.label}{where} parameter '{key}'")
        return self.factory(**params)

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "plugin": self.plugin,
            "description": self.description,
            "parameters": {k: v for k, v in self.parameters().items()},
            "requires": list(self.requires),
            "extra": self.extra,
            "available": not self.missing_requirements(),
            "install": self.install_hint(),
        }


def _coerce(value: Any, default: Any, where: str) -> Any:
    """Check a config value against the type of the parameter's default."""
    if default is None or value is None:
        return value
    expected = type(default)
    if expected is bool:
        ok = isinstance(value, bool)
    elif expected is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        value = float(value) if ok else value
    elif expected is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif expected in (tuple, list):
        ok = isinstance(value, (list, tuple))
        value = expected(value) if ok else value
    else:
        ok = isinstance(value, expected)
    if not ok:
        raise CammimicError(f"{where} must be {expected.__name__}, got {value!r}")
    return value


def _did_you_mean(name: str, choices: Iterable[str]) -> str:
    close = difflib.get_close_matches(name, list(choices), n=1, cutoff=0.5)
    return f' (did you mean "{close[0]}"?)' if close else ""


@attrs.define
class PluginInfo:
    name: str
    distribution: str | None
    version: str | None
    error: str | None = None


class PluginHost:
    """A plugin manager plus what cammimic knows about each loaded plugin.

    Most code uses the process-wide :data:`host`; tests build their own.
    """

    def __init__(self) -> None:
        self.pm = pluggy.PluginManager(ENTRY_POINT_GROUP)
        self.pm.add_hookspecs(hookspecs)
        self.loaded = False
        self.failed: dict[str, PluginInfo] = {}
        self.info: dict[str, PluginInfo] = {}

    # -- loading -------------------------------------------------------------------------
    def entry_points(self) -> list[metadata.EntryPoint]:
        return sorted(metadata.entry_points(group=ENTRY_POINT_GROUP), key=lambda ep: ep.name)

    def load(self, *, block: Iterable[str] = ()) -> PluginHost:
        """Load default and entry-point plugins once; ``block`` names are unregistered and skipped."""
        for name in block:
            self.pm.set_blocked(name)
            self.info.pop(name, None)
            self.failed.pop(name, None)
        if self.loaded:
            return self
        self.loaded = True
        for modname in DEFAULT_PLUGINS:
            if not self.pm.is_blocked(modname):
                self.register(import_module(modname), name=modname, distribution="cammimic", version=__version__)
        allow = os.environ.get(ENV_LOAD_PLUGINS)
        allowed = None if allow is None else {s.strip() for s in allow.split(",") if s.strip()}
        for ep in self.entry_points():
            dist = getattr(ep, "dist", None)
            dist_name = dist.name if dist is not None else None
            version = dist.version if dist is not None else None
            if allowed is not None and ep.name not in allowed and dist_name not in allowed:
                continue
            if self.pm.is_blocked(ep.name) or self.pm.has_plugin(ep.name):
                continue
            try:
                module = ep.load()
                self.register(module, name=ep.name, distribution=dist_name, version=version)
            except Exception as exc:  # noqa: BLE001 - a broken plugin must not take the host down
                uninstall = f"pip uninstall {dist_name}" if dist_name else "uninstall it"
                self.failed[ep.name] = PluginInfo(
                    ep.name,
                    dist_name,
                    version,
                    error=(
                        f'Error importing plugin "{ep.name}" ({ep.value}): {type(exc).__name__}: {exc}. '
                        f'Fix it, {uninstall}, or skip it with [plugins] block = ["{ep.name}"] in your '
                        f"config or {ENV_LOAD_PLUGINS}=<plugins to load>."
                    ),
                )
        self.check_pending()
        return self

    def register(self, plugin: Any, *, name: str | None = None, distribution: str | None = None,
                 version: str | None = None) -> str:
        """Register a plugin object or module (tests and notebooks use this directly)."""
        try:
            name = self.pm.register(plugin, name=name)
        except pluggy.PluginValidationError as exc:
            raise CammimicError(f'plugin "{name}" is invalid: {exc}') from exc
        if name is None:
            raise CammimicError(f"plugin {plugin!r} is blocked or already registered")
        if version is None:
            version = getattr(plugin, "__version__", None)
        self.info[name] = PluginInfo(name, distribution, version)
        return name

    def unregister(self, name: str) -> None:
        self.pm.unregister(name=name)
        self.info.pop(name, None)

    def check_pending(self) -> None:
        """Catch hook implementations of hooks that do not exist (a misspelt hook name).

        Like pytest's ``check_pending`` this is loud: the offending plugin is unregistered and
        reported by name (``cammimic plugins`` and every command show it) with the way out; the
        other plugins keep working.
        """
        valid = [n for n in dir(hookspecs) if hasattr(getattr(hookspecs, n), "cammimic_spec")]
        for hookname, caller in list(self.pm.hook.__dict__.items()):
            if hookname.startswith("_") or caller.spec is not None:
                continue
            for impl in caller.get_hookimpls():
                if impl.optionalhook or impl.plugin_name in self.failed:
                    continue
                info = self.info.get(impl.plugin_name) or PluginInfo(impl.plugin_name, None, None)
                self.unregister(impl.plugin_name)
                info.error = (
                    f'plugin "{impl.plugin_name}" implements unknown hook "{hookname}"'
                    f"{_did_you_mean(hookname, valid)}; valid hooks: {', '.join(sorted(valid))}. "
                    f'Fix the plugin, or skip it with [plugins] block = ["{impl.plugin_name}"] or '
                    f"{ENV_LOAD_PLUGINS}=<plugins to load>."
                )
                self.failed[impl.plugin_name] = info

    # -- components ----------------------------------------------------------------------
    def components(self, kind: str, *, problems: list[str] | None = None) -> dict[str, Component]:
        """Every registered component of a kind, by name.

        Two plugins registering the same name is an error naming both, unless ``problems`` is
        given (for listings): then the first registration wins and the message is appended.
        """
        k = KINDS[kind]
        out: dict[str, Component] = {}
        caller = getattr(self.pm.hook, k.hook)
        # get_hookimpls() lists in registration order; call each so we know who registered what.
        for impl in caller.get_hookimpls():
            plugin_name = impl.plugin_name

            def register(name, factory, *, description="", requires=(), extra=None, _plugin=plugin_name):
                name = str(name)
                if name in out:
                    message = (
                        f'{k.label} "{name}" is registered by both plugin "{out[name].plugin}" and plugin '
                        f'"{_plugin}"; uninstall one or block it, e.g. [plugins] block = ["{_plugin}"]'
                    )
                    if problems is None:
                        raise CammimicError(message)
                    problems.append(message)
                    return
                if not callable(factory):
                    raise CammimicError(f'plugin "{_plugin}" registered {k.label} "{name}" with a non-callable factory')
                out[name] = Component(kind, name, factory, _plugin, description, tuple(requires), extra)

            try:
                impl.function(register=register)
            except CammimicError:
                raise
            except Exception as exc:  # noqa: BLE001
                message = f'plugin "{plugin_name}" failed in {k.hook}: {type(exc).__name__}: {exc}'
                if problems is None:
                    raise CammimicError(message) from exc
                problems.append(message)
        return out

    def get(self, kind: str, name: str, *, where: str = "") -> Component:
        """The component ``name`` of ``kind``; unknown names list the valid ones."""
        table = self.components(kind)
        if name not in table:
            label = KINDS[kind].label
            valid = ", ".join(sorted(table)) or "none installed"
            raise CammimicError(
                f'{label} "{name}"{where} is unknown{_did_you_mean(name, table)}; valid: {valid}. '
                "See `cammimic plugins` for what is installed."
            )
        return table[name]

    def create(self, kind: str, name: str, params: dict[str, Any] | None = None, *, where: str = "") -> Any:
        return self.get(kind, name, where=where).create(params, where=where)

    def locate_attention_layers(self, backbone: str, model: Any, include_ff: bool = False):
        """Ask the plugins which layers of ``model`` get the spatial and temporal LoRA."""
        from cammimic.components import AttentionLayers

        answer = self.pm.hook.locate_attention_layers(backbone=backbone, model=model, include_ff=include_ff)
        if answer is None:
            raise CammimicError(
                f'no plugin locates the attention layers of backbone "{backbone}"; install or write an '
                "adapter plugin implementing the locate_attention_layers hook (see docs/plugins.md)"
            )
        if not isinstance(answer, AttentionLayers):
            raise CammimicError(
                f"locate_attention_layers for backbone \"{backbone}\" returned {type(answer).__name__}, "
                "expected cammimic.components.AttentionLayers"
            )
        return answer

    # -- listing -------------------------------------------------------------------------
    def plugins(self, problems: list[str] | None = None) -> list[dict[str, Any]]:
        """Every plugin with its distribution, version, hooks and components; failures too.

        Never raises for a broken plugin: duplicate names and failing register hooks are
        appended to ``problems`` when given.
        """
        problems = [] if problems is None else problems
        provided: dict[str, dict[str, list[str]]] = {}
        details: dict[str, list[dict[str, Any]]] = {}
        for kind in KINDS.values():
            for comp in self.components(kind.key, problems=problems).values():
                provided.setdefault(comp.plugin, {}).setdefault(kind.plural, []).append(comp.name)
                details.setdefault(comp.plugin, []).append({"kind": kind.key, **comp.to_json()})
        out = []
        for name, plugin in self.pm.list_name_plugin():
            if plugin is None:
                continue
            info = self.info.get(name) or PluginInfo(name, None, None)
            hooks = sorted(c.name for c in self.pm.get_hookcallers(plugin) or [])
            entry = {
                "name": name,
                "distribution": info.distribution,
                "version": info.version,
                "hooks": hooks,
            }
            entry.update({k.plural: sorted(provided.get(name, {}).get(k.plural, [])) for k in KINDS.values()})
            entry["components"] = details.get(name, [])
            out.append(entry)
        for info in self.failed.values():
            out.append({"name": info.name, "distribution": info.distribution, "version": info.version,
                        "hooks": [], "error": info.error})
        return out


#: The process-wide plugin host used by the CLI and the Python API.
host = PluginHost()


def get_host(*, block: Iterable[str] = ()) -> PluginHost:
    """The process-wide host, with plugins loaded (``block`` as in the config)."""
    return host.load(block=block)


def warn_failed(stream=None) -> None:
    """Print one line per plugin that failed to import."""
    stream = stream or sys.stderr
    for info in host.failed.values():
        print(f"warning: {info.error}", file=stream)
