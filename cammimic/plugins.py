"""The plugin host: loading plugins and the name -> factory tables of components.

Loading order: cammimic's default plugins, then every entry point of the group ``cammimic``
(first-party plugins register there too, exactly like third-party ones). The environment
variable ``CAMMIMIC_LOAD_PLUGINS`` (comma-separated entry-point or distribution names; empty
for none) limits which entry points load; the config's ``[plugins] block = [...]`` blocks by
name. A plugin that fails to import is reported by name and the rest keep working.
"""

from __future__ import annotations

import contextlib
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
from cammimic.config import conforms, did_you_mean
from cammimic.errors import CammimicError, one_line

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
        Kind(
            "motion_estimator",
            "register_motion_estimators",
            "motion estimator",
            "motion_estimators",
        ),
        Kind("guidance", "register_guidance_terms", "guidance term", "guidance_terms"),
        Kind("noise", "register_noise_initialisers", "noise initialiser", "noise_initialisers"),
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
        def missing(module: str) -> bool:
            try:
                return importlib.util.find_spec(module) is None
            except (ImportError, ValueError):  # a broken or blocked install counts as missing
                return True

        return [m for m in self.requires if missing(m)]

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
        built = _call_plugin(self.plugin, f"the factory of {self.label}", self.factory, **params)
        needs, wrapper = _CONTRACTS.get(self.kind, ((), None))
        lacking = [n for n in needs if not hasattr(built, n)]
        if built is None or lacking:
            what = (
                "None"
                if built is None
                else f"a {type(built).__name__} without {', '.join(lacking)}"
            )
            raise CammimicError(
                f'the factory of {self.label} (plugin "{self.plugin}") returned {what}; this is a bug in the '
                "plugin: report it to its authors (docs/plugins.md says what a factory must return)"
            )
        if self.kind == "backbone":
            from cammimic.backbones import as_adapter

            built = as_adapter(
                built
            )  # a first-protocol adapter is wrapped, with a DeprecationWarning
        return wrapper(built, self) if wrapper is not None else built

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
    ok, value = conforms(value, default)  # the config's one type rule
    if not ok:
        raise CammimicError(f"{where} must be {expected.__name__}, got {value!r}")
    return value


def _iterable(value: Any) -> Iterable[Any]:
    try:
        return list(value)
    except TypeError:
        return [None]


_did_you_mean = did_you_mean  # one helper for config keys, parameters, names and hooks


class _PluginCode:
    """Run plugin code so that nothing it raises takes the host down (``SystemExit`` and a
    ``KeyboardInterrupt`` it raises itself included), except a real Ctrl-C from the user,
    told apart by a SIGINT handler installed for the duration (main thread only)."""

    def __init__(self) -> None:
        self.pressed = False
        self.previous = None
        self.installed = False

    def _on_sigint(self, signum, frame):
        self.pressed = True
        raise KeyboardInterrupt

    def __enter__(self) -> _PluginCode:
        import signal
        import threading

        if threading.current_thread() is threading.main_thread():
            with contextlib.suppress(ValueError, OSError):
                self.previous = signal.signal(signal.SIGINT, self._on_sigint)
                self.installed = True
        return self

    def __exit__(self, *exc) -> None:
        import signal

        if self.installed:
            signal.signal(signal.SIGINT, self.previous)

    def is_users(self, exc: BaseException) -> bool:
        """Whether ``exc`` must propagate: a real Ctrl-C (or one we could not tell apart)."""
        return isinstance(exc, KeyboardInterrupt) and (self.pressed or not self.installed)


def _call_plugin(plugin: str, what: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Call plugin code; anything it raises but a CammimicError or a real Ctrl-C becomes one line
    naming the plugin."""
    with _PluginCode() as guard:
        try:
            return fn(*args, **kwargs)
        except CammimicError:
            raise
        except BaseException as exc:  # noqa: BLE001 - SystemExit from a plugin is its problem
            if guard.is_users(exc):
                raise
            raise CammimicError(
                f'plugin "{plugin}" failed in {what}: {one_line(exc)}; report it to the plugin\'s '
                f'authors, or block it with [plugins] block = ["{plugin}"]'
            ) from exc


class _Checked:
    """A component built by a plugin, with its results checked at the contract boundary."""

    __slots__ = ("_inner", "_component")

    def __init__(self, inner: Any, component: Component) -> None:
        object.__setattr__(self, "_inner", inner)
        object.__setattr__(self, "_component", component)

    def __getattr__(self, name: str) -> Any:
        return getattr(object.__getattribute__(self, "_inner"), name)

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(self._inner, name, value)

    def __repr__(self) -> str:
        return repr(self._inner)

    def _fail(self, what: str) -> CammimicError:
        c = self._component
        return CammimicError(
            f'{c.label} of plugin "{c.plugin}" {what}; this is a bug in the plugin: report it to its '
            f"authors, or use another {KINDS[c.kind].label}"
        )


class _CheckedEstimator(_Checked):
    __slots__ = ()

    def estimate(self, frames):
        import numpy as np

        from cammimic.motion import MotionEstimate

        c = self._component
        result = _call_plugin(c.plugin, f"{c.label}.estimate", self._inner.estimate, frames)
        if not isinstance(result, MotionEstimate):
            raise self._fail(
                f"returned {type(result).__name__}, not a cammimic.motion.MotionEstimate"
            )
        count = len(frames) - 1
        if len(result.homographies) != count:
            raise self._fail(
                f"returned {len(result.homographies)} homographies for {len(frames)} frames, "
                f"not {count}"
            )
        bad = np.flatnonzero(~np.isfinite(result.homographies).all(axis=(1, 2)))
        if len(bad):
            raise self._fail(
                f"returned non-finite homographies (NaN or inf) for frame pair {int(bad[0])}"
            )
        return result


class _CheckedAdapter(_Checked):
    __slots__ = ()

    @property
    def __class__(
        self,
    ):  # isinstance(adapter, BackboneAdapter) sees the plugin's class through the check
        return type(object.__getattribute__(self, "_inner"))

    def load(self, *args, **kwargs):
        from cammimic.backbones import as_backbone, missing_members

        c = self._component
        backbone = _call_plugin(c.plugin, f"{c.label}.load", self._inner.load, *args, **kwargs)
        missing = missing_members(backbone)
        if missing:
            raise self._fail(
                f"load() returned {type(backbone).__name__}, not a cammimic.components.Backbone"
                f" (missing {', '.join(missing[:4])})"
            )
        return as_backbone(
            backbone
        )  # a first-protocol backbone is wrapped, with a DeprecationWarning


#: What each kind's factory must return (attribute names), and the checking wrapper.
_CONTRACTS: dict[str, tuple[tuple[str, ...], type[_Checked] | None]] = {
    "backbone": (("load", "default_size", "vae_scale_factor"), _CheckedAdapter),
    "motion_estimator": (("estimate",), _CheckedEstimator),
    "guidance": (("apply",), None),
    "noise": (("draw",), None),
}


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
        #: backbone name -> the plugin whose locate_attention_layers answered last
        self.located_by: dict[str, str] = {}
        self.warned: set[str] = set()
        #: kind -> (name -> component, every valid registration, problems); built on the first
        #: lookup after loading and again only when the set of plugins changes
        self._tables: dict[str, tuple[dict[str, Component], list[Component], list[str]]] = {}

    # -- loading -------------------------------------------------------------------------
    def entry_points(self) -> list[metadata.EntryPoint]:
        return sorted(metadata.entry_points(group=ENTRY_POINT_GROUP), key=lambda ep: ep.name)

    def load(self, *, block: Iterable[str] = ()) -> PluginHost:
        """Load default and entry-point plugins once; ``block`` names are unregistered and skipped."""
        for name in block:
            self.pm.set_blocked(name)
            self.info.pop(name, None)
            self.failed.pop(name, None)
            self._tables.clear()
        if self.loaded:
            return self
        self.loaded = True
        for modname in DEFAULT_PLUGINS:
            if not self.pm.is_blocked(modname):
                self.register(
                    import_module(modname),
                    name=modname,
                    distribution="cammimic",
                    version=__version__,
                )
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
            with _PluginCode() as guard:
                try:
                    module = ep.load()
                    self.register(module, name=ep.name, distribution=dist_name, version=version)
                except BaseException as exc:  # noqa: BLE001 - a broken plugin must not take the host down
                    if guard.is_users(exc):
                        raise
                    self._import_failed(ep, dist_name, version, exc)
        self.check_pending()
        return self

    def _import_failed(
        self, ep, dist_name: str | None, version: str | None, exc: BaseException
    ) -> None:
        uninstall = f"pip uninstall {dist_name}" if dist_name else "uninstall it"
        self.failed[ep.name] = PluginInfo(
            ep.name,
            dist_name,
            version,
            error=(
                f'Error importing plugin "{ep.name}" ({ep.value}): {one_line(exc)}. '
                f'Fix it, {uninstall}, or skip it with [plugins] block = ["{ep.name}"] in your '
                f"config or {ENV_LOAD_PLUGINS}=<plugins to load>."
            ),
        )

    def register(
        self,
        plugin: Any,
        *,
        name: str | None = None,
        distribution: str | None = None,
        version: str | None = None,
    ) -> str:
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
        self._tables.clear()
        return name

    def unregister(self, name: str) -> None:
        self.pm.unregister(name=name)
        self.info.pop(name, None)
        self._tables.clear()

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
    def first_party(self, plugin: str) -> bool:
        """Whether ``plugin`` ships with cammimic (its distribution is cammimic itself)."""
        info = self.info.get(plugin)
        return info is not None and info.distribution == "cammimic"

    def _collect(self, kind: str) -> tuple[dict[str, Component], list[Component], list[str]]:
        """``(table, every valid registration, problems)`` for one kind, built once (see
        :meth:`_build`) and kept until a plugin is registered, unregistered or blocked."""
        if kind not in self._tables:
            self._tables[kind] = self._build(kind)
        return self._tables[kind]

    def _build(self, kind: str) -> tuple[dict[str, Component], list[Component], list[str]]:
        """Run the kind's register hook through pluggy, one plugin at a time.

        Each plugin's implementation is called through ``pm.subset_hook_caller`` (the hook with
        every other plugin removed), with a ``register`` bound to that plugin: so every
        registration is attributed to its plugin, and a plugin whose hook raises loses only
        what it registered (one ``pm.hook`` call for all would stop at the first failure).

        Rule for a name registered twice: cammimic's own component wins over a third-party one,
        otherwise the first registered wins; every registration stays selectable as
        ``plugin:name``. Bad registrations and failing register hooks are problems, never errors.
        """
        k = KINDS[kind]
        table: dict[str, Component] = {}
        every: list[Component] = []
        problems: list[str] = []
        impls = getattr(self.pm.hook, k.hook).get_hookimpls()  # in registration order
        for impl in impls:
            plugin_name = impl.plugin_name
            only_this = self.pm.subset_hook_caller(
                k.hook, remove_plugins=[i.plugin for i in impls if i.plugin is not impl.plugin]
            )

            def register(
                name, factory, *, description="", requires=(), extra=None, _plugin=plugin_name
            ):
                shown = repr(name)[:60]
                why = None
                if not isinstance(name, str) or not name or ":" in name or len(name) > 100:
                    why = f"an invalid name {shown} (a non-empty string without ':')"
                elif not callable(factory):
                    why = (
                        f"{k.label} {shown} with a non-callable factory ({type(factory).__name__})"
                    )
                elif not isinstance(description, str):
                    why = f"{k.label} {shown} with a description that is not a string"
                elif isinstance(requires, str) or not all(
                    isinstance(r, str) for r in _iterable(requires)
                ):
                    why = f"{k.label} {shown} with requires that is not a list of module names"
                elif extra is not None and not isinstance(extra, str):
                    why = f"{k.label} {shown} with an extra that is not a string"
                if why:
                    problems.append(f'plugin "{_plugin}" registered {why}; it is skipped')
                    return
                comp = Component(kind, name, factory, _plugin, description, tuple(requires), extra)
                every.append(comp)
                if name not in table:
                    table[name] = comp
                    return
                first = table[name]
                if self.first_party(_plugin) and not self.first_party(first.plugin):
                    table[name], other = comp, first
                else:
                    other = comp
                problems.append(
                    f'{k.label} "{name}" is registered by both plugin "{first.plugin}" and plugin "{_plugin}"; '
                    f'using the one from "{table[name].plugin}"'
                    f"{' (cammimic’s own wins)' if self.first_party(table[name].plugin) else ' (registered first)'}; "
                    f'select the other as "{other.plugin}:{name}", or block a plugin with '
                    f'[plugins] block = ["{other.plugin}"]'
                )

            try:
                _call_plugin(plugin_name, k.hook, only_this, register=register)
            except CammimicError as exc:
                problems.append(str(exc))
        return table, every, problems

    def components(self, kind: str, *, problems: list[str] | None = None) -> dict[str, Component]:
        """Every selectable component of a kind, by name (see :meth:`_build` for duplicates).

        Problems (duplicates, bad registrations, failing hooks) are appended to ``problems``
        when given (for listings), else printed once as warnings on stderr.
        """
        table, _, found = self._collect(kind)
        if problems is not None:
            problems.extend(found)
        else:
            self._warn(found)
        return dict(table)

    def _warn(self, messages: Iterable[str]) -> None:
        for message in messages:
            if message not in self.warned:
                self.warned.add(message)
                print(f"warning: {message}", file=sys.stderr)

    def get(self, kind: str, name: str, *, where: str = "") -> Component:
        """The component ``name`` (or ``plugin:name``) of ``kind``; unknown names list the valid ones."""
        table, every, found = self._collect(kind)
        self._warn(found)
        if ":" in name:
            plugin, _, base = name.partition(":")
            for comp in every:
                if (comp.plugin, comp.name) == (plugin, base):
                    return comp
        if name not in table:
            label = KINDS[kind].label
            valid = ", ".join(sorted(table)) or "none installed"
            raise CammimicError(
                f'{label} "{name}"{where} is unknown{_did_you_mean(name, table)}; valid: {valid}. '
                "See `cammimic plugins` for what is installed."
            )
        return table[name]

    def create(
        self, kind: str, name: str, params: dict[str, Any] | None = None, *, where: str = ""
    ) -> Any:
        return self.get(kind, name, where=where).create(params, where=where)

    def attention_locators(self, backbone: str) -> list[str]:
        """The plugins asked, in order, where the LoRAs go on ``backbone``: the plugin that
        registered the backbone first, then the others in pluggy's order (generic ones last)."""
        impls = list(reversed(self.pm.hook.locate_attention_layers.get_hookimpls()))  # call order
        owner = self._collect("backbone")[0].get(backbone)
        names = [i.plugin_name for i in impls]
        if owner is not None and owner.plugin in names:
            names.remove(owner.plugin)
            names.insert(0, owner.plugin)
        return names

    def locate_attention_layers(self, backbone: str, model: Any, include_ff: bool = False):
        """Ask the plugins which layers of ``model`` get the spatial and temporal LoRA.

        The backbone's own plugin answers first; the first non-``None`` answer wins, and
        :attr:`located_by` records which plugin gave it.
        """
        from cammimic.components import AttentionLayers

        impls = {i.plugin_name: i for i in self.pm.hook.locate_attention_layers.get_hookimpls()}
        kwargs = {"backbone": backbone, "model": model, "include_ff": include_ff}
        for plugin in self.attention_locators(backbone):
            impl = impls[plugin]
            answer = _call_plugin(
                plugin,
                "locate_attention_layers",
                impl.function,
                **{a: kwargs[a] for a in impl.argnames},
            )
            if answer is None:
                continue
            if not isinstance(answer, AttentionLayers):
                raise CammimicError(
                    f'plugin "{plugin}": locate_attention_layers for backbone "{backbone}" returned '
                    f"{type(answer).__name__}, expected cammimic.components.AttentionLayers"
                )
            self.located_by[backbone] = plugin
            return answer
        raise CammimicError(
            f'no plugin locates the attention layers of backbone "{backbone}"; install or write an '
            "adapter plugin implementing the locate_attention_layers hook (see docs/plugins.md)"
        )

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
                entry = {"kind": kind.key, **comp.to_json()}
                if kind.key == "backbone":
                    entry["attention_layers_from"] = self.attention_locators(comp.name)
                details.setdefault(comp.plugin, []).append(entry)
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
            entry.update(
                {k.plural: sorted(provided.get(name, {}).get(k.plural, [])) for k in KINDS.values()}
            )
            entry["components"] = details.get(name, [])
            out.append(entry)
        for info in self.failed.values():
            out.append(
                {
                    "name": info.name,
                    "distribution": info.distribution,
                    "version": info.version,
                    "hooks": [],
                    "error": info.error,
                }
            )
        return out

    def component_record(self, kind: str, name: str) -> dict[str, Any]:
        """Which plugin (distribution, version) provides component ``name`` of ``kind``: the
        record a run writes into ``run.json`` for every component it used."""
        comp = self.get(kind, name)
        info = self.info.get(comp.plugin)
        return {
            "name": name,
            "plugin": comp.plugin,
            "distribution": info.distribution if info else None,
            "version": info.version if info else None,
        }


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
