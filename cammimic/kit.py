"""The backbone kit: what a backbone plugin built on diffusers models shares, public and documented.

:class:`DiffusersAdapter` is a :class:`~cammimic.components.BackboneAdapter` whose ``load`` is the
whole skeleton every diffusers backbone repeats: weights by Hub id or folder, the offline and
cache checks, dtype resolution, one-line errors, the scheduler-config check, freezing the
models. A subclass states its ``subfolders`` and overrides :meth:`~DiffusersAdapter.load_components`,
:meth:`~DiffusersAdapter.check_scheduler_config`, :meth:`~DiffusersAdapter.sampler_from_config`
and :meth:`~DiffusersAdapter.build`. :class:`DiffusersBackbone` is a
:class:`~cammimic.components.Backbone` with the fingerprint and the gradient checkpointing
(:func:`checkpoint_blocks`: each block recomputed with the LoRA scales it ran with). The helpers
below (Hub, dtype, errors, LoRA scales) are the pieces, for a backbone that loads its own way.

``cammimic_unet3d`` (zeroscope, ModelScope, mini) and ``cammimic_wan`` are built on this kit, and so
is the tutorial plugin ``examples/plugins/cammimic-mybackbone``. Importing it is cheap: torch,
diffusers, transformers, huggingface_hub and peft are imported where they are used.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import warnings
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, ClassVar

from cammimic.backbones import Backbone, BackboneAdapter, check_request, check_size
from cammimic.devices import resolve_device
from cammimic.errors import CammimicError

__all__ = [
    "DiffusersAdapter",
    "DiffusersBackbone",
    "checkpoint_blocks",
    "first_line",
    "hub_offline",
    "hub_unreachable",
    "hub_cache_dir",
    "hub_errors",
    "resolve_dtype",
    "resolve_weights",
    "looks_local",
    "require_cached",
    "load_text_encoder",
    "quiet_libraries",
    "translate_errors",
    "unsafe_pickle",
    "lora_scales",
    "restored_lora_scales",
    "ATTENTION_CHOICES",
]

#: ``attention`` values a diffusers backbone takes: PyTorch's scaled-dot-product attention or diffusers' choice.
ATTENTION_CHOICES = ("sdpa", "default")
_DTYPE_NAMES = {
    "float32": "float32",
    "fp32": "float32",
    "float16": "float16",
    "fp16": "float16",
    "half": "float16",
    "bfloat16": "bfloat16",
    "bf16": "bfloat16",
}
_HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+")
_MISSING = object()


def first_line(exc: BaseException) -> str:
    """``"Type: first line of the message"``: an exception in one line, for a one-line error."""
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0] if text else ''}".rstrip(": ")


# -- the Hugging Face Hub -----------------------------------------------------------------------


def _truthy(value: str | None) -> bool:
    return (value or "").strip().upper() in {"1", "ON", "YES", "TRUE"}


def hub_offline() -> bool:
    """Whether the Hub is off, read from the environment now (huggingface_hub reads it at import)."""
    from huggingface_hub import constants

    env = os.environ
    return any(_truthy(env.get(k)) for k in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")) or bool(
        constants.HF_HUB_OFFLINE
    )


def hub_unreachable(timeout: float = 1.5) -> str | None:
    """``None`` if a TCP connection to the Hub (or the HTTPS proxy) opens within ``timeout``
    seconds, else why not, as a phrase. Name resolution runs in a thread so it cannot hang us."""
    import socket
    import threading
    from urllib.parse import urlsplit

    from huggingface_hub import constants

    env = os.environ
    endpoint = env.get("HF_ENDPOINT") or constants.ENDPOINT
    proxy = (
        env.get("HTTPS_PROXY")
        or env.get("https_proxy")
        or env.get("ALL_PROXY")
        or env.get("all_proxy")
    )
    target = urlsplit(
        proxy if proxy and "://" in proxy else f"http://{proxy}" if proxy else endpoint
    )
    host = target.hostname or ""
    port = target.port or (443 if target.scheme == "https" else 80)
    outcome: list[BaseException | None] = []

    def probe() -> None:
        try:
            socket.create_connection((host, port), timeout=timeout).close()
            outcome.append(None)
        except OSError as exc:
            outcome.append(exc)

    thread = threading.Thread(target=probe, daemon=True)
    thread.start()
    thread.join(timeout + 0.2)
    what = f"the proxy {host}:{port}" if proxy else f"the Hub ({endpoint})"
    if not outcome:
        return f"{what} did not answer within {timeout:g} s (offline?)"
    if outcome[0] is not None:
        return f"{what} cannot be reached ({first_line(outcome[0])[:80]})"
    return None


def hub_cache_dir() -> str:
    """The Hugging Face Hub cache, read from the environment now (same rules as huggingface_hub)."""
    from huggingface_hub import constants

    env = os.environ
    path = env.get("HF_HUB_CACHE") or env.get("HUGGINGFACE_HUB_CACHE")
    if not path and env.get("HF_HOME"):
        path = os.path.join(env["HF_HOME"], "hub")
    return os.path.expandvars(os.path.expanduser(path)) if path else constants.HF_HUB_CACHE


def hub_errors() -> tuple[type[BaseException], ...]:
    """Exceptions that mean "the weights could not be fetched" (not a bug in cammimic)."""
    from huggingface_hub import errors

    kinds: list[type[BaseException]] = [
        OSError,
        errors.HfHubHTTPError,
        errors.EntryNotFoundError,
        errors.HFValidationError,
    ]
    with contextlib.suppress(ImportError):
        import httpx

        kinds.append(httpx.HTTPError)
    with contextlib.suppress(ImportError):
        import requests

        kinds.append(requests.RequestException)
    return tuple(kinds)


def looks_local(weights: str) -> bool:
    """Whether ``weights`` is a path the user meant as a directory rather than a Hub id like ``owner/name``."""
    if weights.startswith((".", "/", "~")) or (os.altsep and weights.startswith(os.altsep)):
        return True
    has_sep = os.sep in weights or bool(os.altsep and os.altsep in weights)
    return has_sep and not _HUB_ID.fullmatch(weights)


def resolve_weights(
    weights: str | os.PathLike, subfolders: Iterable[str], name: str, example: str = ""
) -> tuple[str, bool]:
    """``(source, is_local_directory)`` for ``--weights``: a diffusers-layout directory with
    ``subfolders`` (missing or incomplete ones fail here, in one line) or a Hub id. ``example`` is
    a command that writes such a directory, named when subfolders are missing."""
    subfolders = tuple(subfolders)
    text = os.fspath(weights)
    path = Path(os.path.expanduser(text))
    layout = f"a diffusers-layout directory with {'/ '.join(subfolders)}/"
    if path.is_dir():
        missing = [s for s in subfolders if not (path / s).is_dir()]
        if missing:
            raise CammimicError(
                f"weights directory {path} has no {'/, '.join(missing)}/ subfolder"
                f"{'s' if len(missing) > 1 else ''}; {name} weights need {layout}"
                + (f" (e.g. {example} for random test weights)" if example else "")
            )
        return str(path.resolve()), True
    if path.exists():
        raise CammimicError(f"weights {path} is a file; pass {layout}")
    if looks_local(text):
        raise CammimicError(
            f"weights directory {path} does not exist; pass {layout}, or a Hub id (owner/name)"
        )
    return text, False


def require_cached(source: str, options: dict) -> None:
    """Fail at once (OSError) when a Hub id's scheduler config is not in the cache."""
    from huggingface_hub import try_to_load_from_cache

    found = try_to_load_from_cache(
        source,
        "scheduler/scheduler_config.json",
        cache_dir=options.get("cache_dir"),
        revision=options.get("revision"),
    )
    if not isinstance(found, str):
        raise OSError(f"{source} is not in the cache")


# -- loading ------------------------------------------------------------------------------------


def resolve_dtype(torch_dtype: Any, device: Any) -> Any:
    """``None``/``"auto"``: bfloat16 on CUDA (float16 where the GPU lacks bfloat16), float32 on CPU.

    bfloat16 is the safer half type for finetuning: it has float32's exponent range, so its
    gradients neither underflow nor need a loss scaler (float16 does; see
    :func:`cammimic.training.mixed_precision`), and the zeroscope VAE does not overflow in it.
    """
    import torch

    if torch_dtype is None or torch_dtype == "auto":
        if device.type != "cuda":
            return torch.float32
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if isinstance(torch_dtype, torch.dtype):
        dtype = torch_dtype
    elif isinstance(torch_dtype, str) and torch_dtype.removeprefix("torch.") in _DTYPE_NAMES:
        dtype = getattr(torch, _DTYPE_NAMES[torch_dtype.removeprefix("torch.")])
    else:
        raise CammimicError(
            f"torch_dtype '{torch_dtype}' is unknown. Try one of ['auto', 'float32', 'float16', 'bfloat16']"
        )
    if dtype not in (torch.float32, torch.float16, torch.bfloat16):
        raise CammimicError(
            f"torch_dtype {dtype} is not supported; use float32, float16 or bfloat16"
        )
    if dtype == torch.float16 and device.type == "cpu":
        raise CammimicError(
            "torch_dtype float16 is not supported on the CPU; use float32 (or bfloat16)"
        )
    return dtype


def load_text_encoder(cls, source: str, dtype: Any, model_options: dict):
    """``cls.from_pretrained(source, subfolder="text_encoder")`` in ``dtype``, without the
    "Loading weights" bar transformers draws for every load, even from a local folder (the run has
    its own progress bars; downloads keep huggingface_hub's)."""
    import transformers

    dtype_key = "dtype" if int(transformers.__version__.split(".")[0]) >= 5 else "torch_dtype"
    bars = transformers.utils.logging.is_progress_bar_enabled()
    transformers.utils.logging.disable_progress_bar()
    try:
        return cls.from_pretrained(
            source, subfolder="text_encoder", **{dtype_key: dtype}, **model_options
        )
    finally:
        if bars:
            transformers.utils.logging.enable_progress_bar()


@contextlib.contextmanager
def quiet_libraries() -> Iterator[None]:
    """diffusers and transformers log their fallbacks ("Defaulting to unsafe serialization …",
    "An error occurred while trying to fetch …") on stderr; a failed load is one line of ours."""
    import diffusers
    import transformers

    levels = (diffusers.utils.logging.get_verbosity(), transformers.utils.logging.get_verbosity())
    diffusers.utils.logging.set_verbosity(50)  # CRITICAL: it logs fallbacks as errors
    transformers.utils.logging.set_verbosity(50)
    try:
        yield
    finally:
        diffusers.utils.logging.set_verbosity(levels[0])
        transformers.utils.logging.set_verbosity(levels[1])


def unsafe_pickle(exc: BaseException) -> bool:
    """Whether a load failed because a .bin pickle holds more than tensors (weights_only refused it)."""
    import pickle

    seen = 0
    while exc is not None and seen < 10:
        if isinstance(exc, pickle.UnpicklingError) or "weights_only" in str(exc):
            return True
        exc, seen = exc.__cause__ or exc.__context__, seen + 1
    return False


@contextlib.contextmanager
def translate_errors(
    name: str,
    source: str,
    local: bool,
    options: dict,
    subfolders: Iterable[str],
    unreachable: str | None = None,
) -> Iterator[None]:
    """Turn the many ways a download or a read fails into one line with the way out: the folder or
    Hub id, the cache searched, why (offline, unreachable, refused pickle) and ``--weights``."""
    try:
        yield
    except CammimicError:
        raise
    except hub_errors() as exc:
        layout = f"a diffusers-layout directory with {'/ '.join(subfolders)}/"
        if unsafe_pickle(exc):
            raise CammimicError(
                f"could not load {name} weights from {source}: a .bin (pickle) weights file holds "
                "more than tensors, so it was refused (loading it could run code); use .safetensors "
                "weights, or convert trusted ones with diffusers' save_pretrained"
            ) from exc
        if local:
            raise CammimicError(
                f"could not load {name} weights from {source}: {first_line(exc)}; --weights needs {layout}"
            ) from exc
        where = f"--weights /path/to/{source.rsplit('/', 1)[-1]}"
        cache = options.get("cache_dir") or hub_cache_dir()
        if unreachable:
            reason = f"are not in the Hugging Face cache ({cache}) and {unreachable}"
            fix = f"download them once online (hf download {source})"
        elif options.get("local_files_only"):
            reason = (
                f"are not in the Hugging Face cache ({cache}) and downloads are off "
                "(HF_HUB_OFFLINE or local_files_only)"
            )
            fix = f"download them once online (hf download {source})"
        else:
            reason = f"could not be loaded from the Hub or the Hugging Face cache ({cache}): {first_line(exc)}"
            fix = "check the id, your connection and the revision"
        raise CammimicError(
            f'{name} weights "{source}" {reason}; {fix}, or pass a local folder with {where} ({layout})'
        ) from exc


# -- LoRA scales and gradient checkpointing -------------------------------------------------------


def lora_scales(module: Any) -> list[tuple[Any, str, float]]:
    """``(layer, adapter, scaling)`` of every peft LoRA layer in ``module``, as they are now."""
    from peft.tuners.lora import LoraLayer

    return [
        (m, a, v)
        for m in module.modules()
        if isinstance(m, LoraLayer)
        for a, v in m.scaling.items()
    ]


@contextlib.contextmanager
def restored_lora_scales(scales: list[tuple[Any, str, float]]) -> Iterator[None]:
    """Run with the LoRA scales of ``scales``, then put back the ones in force before."""
    now = [(m, a, m.scaling[a]) for m, a, _ in scales]
    for m, a, v in scales:
        m.scaling[a] = v
    try:
        yield
    finally:
        for m, a, v in now:
            m.scaling[a] = v


def checkpoint_blocks(
    saved: dict,
    blocks: Iterable[Any],
    enabled: bool,
    replay: Callable[[], Callable[[], contextlib.AbstractContextManager]] | None = None,
) -> None:
    """Recompute each of ``blocks``' activations in the backward pass (``enabled``), or undo it.

    Active only while gradients are enabled (training); inference is unchanged. A block is
    recomputed with the LoRA scales it ran with (e.g. the spatial LoRA masked off) even when the
    backward pass runs after the ``with`` block that set them has ended; diffusers' own
    ``enable_gradient_checkpointing`` would recompute with today's. ``replay()``, called at each
    forward, returns a context-manager factory for any other state the recomputation must see
    again (a UNet3D's temporal bypass). ``saved`` keeps each block's own ``forward`` to put back.
    """
    if enabled:
        for block in blocks:
            if block not in saved:
                saved[block] = block.__dict__.get("forward", _MISSING)
                block.forward = _checkpointed_forward(block, block.forward, replay)
        return
    for block, forward in saved.items():
        if forward is _MISSING:
            del block.forward
        else:
            block.forward = forward
    saved.clear()


def _checkpointed_forward(block, forward, replay):
    import torch
    from torch.utils.checkpoint import checkpoint

    def wrapped(*args, **kwargs):
        if not torch.is_grad_enabled():
            return forward(*args, **kwargs)
        state = replay() if replay is not None else contextlib.nullcontext
        scales = lora_scales(block)

        def run(*a, **k):  # the recomputation must see the same state and LoRA scales
            with state(), restored_lora_scales(scales):
                return forward(*a, **k)

        return checkpoint(run, *args, use_reentrant=False, **kwargs)

    return wrapped


# -- the base classes ------------------------------------------------------------------------------


class DiffusersAdapter(BackboneAdapter):
    """A :class:`~cammimic.components.BackboneAdapter` for a model in diffusers' folder layout.

    A subclass (an ``attrs`` class, say) provides the attributes ``name``, ``default_weights``,
    ``default_size``, ``default_num_frames``, ``vae_scale_factor``, ``revision``, ``variant``,
    ``torch_dtype`` and ``attention`` (the defaults of :meth:`load`), sets :attr:`subfolders`, and
    overrides the four steps of :meth:`load` that are its own: :meth:`load_components`,
    :meth:`check_scheduler_config`, :meth:`sampler_from_config` and :meth:`build`.
    """

    #: What a weights folder must contain (``unet``/``transformer``, ``vae``, ..., ``scheduler``).
    subfolders: ClassVar[tuple[str, ...]] = ()
    #: A command that writes random test weights, named when a folder misses subfolders.
    random_weights_command: ClassVar[str] = ""
    #: The attention choices :meth:`load` takes.
    attention_choices: ClassVar[tuple[str, ...]] = ATTENTION_CHOICES
    #: The config files :meth:`preflight` reads (from a folder or the Hugging Face cache).
    preflight_files: ClassVar[tuple[str, ...]] = ("scheduler/scheduler_config.json",)

    def load(
        self,
        weights: str | os.PathLike | None = None,
        *,
        torch_dtype: Any = None,
        variant: str | None = None,
        revision: str | None = None,
        local_files_only: bool | None = None,
        device: Any = None,
        attention: str | None = None,
        **options: Any,
    ) -> Backbone:
        """Load the models from a Hub id or a local diffusers-layout directory, frozen on ``device``.

        Args:
            weights: a Hub id or a local folder with :attr:`subfolders`; ``None`` loads ``default_weights``.
            torch_dtype: ``"float32"``, ``"float16"``, ``"bfloat16"`` (or a torch dtype); ``None``
                uses the adapter's setting, then bfloat16 on CUDA / float32 on CPU (:func:`resolve_dtype`).
            variant, revision: as in diffusers' ``from_pretrained`` (Hub ids only).
            local_files_only: never touch the network; ``None`` follows ``HF_HUB_OFFLINE`` (and an
                unreachable Hub counts as offline: the cache alone, instead of minutes of retries).
            device: ``"cpu"``, ``"cuda[:n]"``; ``None`` = CUDA when available.
            attention: one of :attr:`attention_choices`; ``None``: the adapter's.
            options: the subclass's own (:meth:`load_settings`).

        Raises:
            CammimicError: one line naming the missing directory, subfolder or Hub id, the
                Hugging Face cache that was searched, and ``--weights`` as the way out.
        """
        weights = self.default_weights if weights is None else weights
        device = resolve_device(device)
        dtype = resolve_dtype(torch_dtype if torch_dtype is not None else self.torch_dtype, device)
        attention = attention if attention is not None else self.attention
        if attention not in self.attention_choices:
            raise CammimicError(
                f"attention '{attention}' is unknown. Try one of {list(self.attention_choices)}"
            )
        settings = self.load_settings(**options)
        source, local = resolve_weights(
            weights, self.subfolders, self.name, self.random_weights_command
        )
        hub: dict[str, Any] = {}
        unreachable = None
        if not local:
            offline = hub_offline() if local_files_only is None else bool(local_files_only)
            if not offline:
                # No network: use the cache alone instead of ~30 s of download retries.
                unreachable = hub_unreachable()
                offline = unreachable is not None
            hub = {"local_files_only": offline, "cache_dir": hub_cache_dir()}
            revision = revision if revision is not None else self.revision
            if revision:
                hub["revision"] = revision
        variant = variant if variant is not None else self.variant
        model_options = {**hub, **({"variant": variant} if variant else {})}
        with (
            translate_errors(self.name, source, local, hub, self.subfolders, unreachable),
            warnings.catch_warnings(),
        ):
            if hub.get("local_files_only"):
                require_cached(source, hub)  # before diffusers' heavy imports
            # diffusers passes huggingface_hub an argument it deprecated; not the user's concern.
            warnings.filterwarnings("ignore", message=".*local_dir_use_symlinks.*")
            with quiet_libraries():
                components = self.load_components(source, dtype, hub, model_options)
        self.check_scheduler_config(components["scheduler_config"], source)
        for key in ("denoiser", "vae", "text_encoder"):
            components[key].to(device).eval().requires_grad_(False)
        return self.build(
            components, source=source, device=device, dtype=dtype, attention=attention, **settings
        )

    def load_settings(self, **options: Any) -> dict[str, Any]:
        """The subclass's own :meth:`load` options, checked before any file is read, as keyword
        arguments for :meth:`build`. None here: an unknown option is refused."""
        if options:
            raise TypeError(
                f"{type(self).__name__}.load() got unexpected keyword arguments {sorted(options)}"
            )
        return {}

    def load_components(
        self, source: str, dtype: Any, options: dict, model_options: dict
    ) -> dict[str, Any]:
        """``{"denoiser", "vae", "text_encoder", "tokenizer", "scheduler_config"}`` from ``source``
        (``options``: the Hub's ``local_files_only``/``cache_dir``/``revision``; ``model_options``
        adds ``variant`` for model weights). Load the small parts first, so a missing model fails fast."""
        raise NotImplementedError(f"{type(self).__name__} must implement load_components()")

    def check_scheduler_config(self, config: dict, source: str) -> None:
        """Refuse a scheduler config whose samplers cannot be built, in one line, at load and not mid-run
        (:meth:`bad_scheduler_config` words it). Nothing is checked here."""

    def bad_scheduler_config(self, source: str, why: str) -> CammimicError:
        """The one-line error of an invalid scheduler config of ``source``."""
        where = f"the scheduler config of {source} (scheduler/scheduler_config.json)"
        return CammimicError(f"{where} is invalid: {why}; fix the file or use other --weights")

    def sampler_from_config(self, kind: str, scheduler_config: dict) -> Any:
        """A fresh sampler ``kind`` (one of :attr:`samplers`) on ``scheduler_config``: what the loaded
        backbone's ``sampling_scheduler`` returns, and what :meth:`preflight` checks steps against."""
        raise NotImplementedError(f"{type(self).__name__} must implement sampler_from_config()")

    def build(
        self,
        components: dict[str, Any],
        *,
        source: str,
        device: Any,
        dtype: Any,
        attention: str,
        **settings: Any,
    ) -> Backbone:
        """The loaded :class:`~cammimic.components.Backbone` of frozen ``components`` on ``device``."""
        raise NotImplementedError(f"{type(self).__name__} must implement build()")

    # -- preflight: the rules the configs state, before the weights load ----------------------------
    def read_configs(self) -> dict[str, dict] | None:
        """:attr:`preflight_files` of ``default_weights`` as dicts, from its folder or, for a Hub id,
        from the Hugging Face cache (never the network); ``None`` when any is not at hand or not a
        JSON object (a broken folder is the loader's to report)."""
        text = os.fspath(self.default_weights)
        folder = Path(os.path.expanduser(text))
        found: dict[str, Path] = {}
        if folder.is_dir():
            found = {f: folder / f for f in self.preflight_files}
        elif folder.exists() or looks_local(text):
            return None
        else:
            try:
                from huggingface_hub import try_to_load_from_cache

                for f in self.preflight_files:
                    hit = try_to_load_from_cache(
                        text, f, cache_dir=hub_cache_dir(), revision=self.revision
                    )
                    if not isinstance(hit, str):
                        return None
                    found[f] = Path(hit)
            except Exception:  # noqa: BLE001 - an invalid id is the loader's to report
                return None
        try:
            configs = {f: json.loads(p.read_text(encoding="utf-8")) for f, p in found.items()}
        except (OSError, ValueError):
            return None
        return configs if all(isinstance(c, dict) for c in configs.values()) else None

    def check_size(self, configs: dict[str, dict], width: int, height: int) -> None:
        """The size rules of the weights' configs (:meth:`preflight`); here: multiples of ``size_multiple``."""
        check_size(int(width), int(height), int(self.size_multiple), self.name)

    def preflight(
        self, width: int, height: int, frames: int, sampler: str | None, steps: int | None
    ) -> bool:
        """Size, frames and steps against the weights' own configs, before any model loads.

        With the configs at hand (a folder, or a Hub id in the cache) every rule is checked and
        ``True`` returned; otherwise the adapter's own rules are, and ``False`` says the loaded
        backbone's :meth:`~cammimic.components.Backbone.preflight` must check the rest.
        """
        configs = self.read_configs()
        if configs is None:
            check_request(self, width, height, frames, None, None, multiple=self.size_multiple)
            return False
        self.check_size(configs, width, height)
        scheduler, complete = None, True
        if sampler and steps is not None:
            try:
                built = self.sampler_from_config(
                    sampler, configs["scheduler/scheduler_config.json"]
                )
                scheduler = lambda _kind: built  # noqa: E731
            except CammimicError:
                raise
            except Exception:  # noqa: BLE001 - a bogus config is the loader's to report, in one line
                complete = False
        check_request(self, width, height, frames, sampler, steps, scheduler=scheduler)
        return complete


class DiffusersBackbone(Backbone):
    """A :class:`~cammimic.components.Backbone` on diffusers models: the fingerprint of its
    denoiser and gradient checkpointing of :meth:`checkpointed_blocks` (:func:`checkpoint_blocks`)."""

    def fingerprint(self) -> str:
        """The architecture hash LoRA files are checked against (:func:`cammimic.lora.unet_fingerprint`)."""
        from cammimic.lora import unet_fingerprint

        return unet_fingerprint(self.denoiser)

    def checkpointed_blocks(self) -> list[Any]:
        """The denoiser's blocks whose activations are recomputed (a UNet's down/mid/up blocks)."""
        raise NotImplementedError(f"{type(self).__name__} must implement checkpointed_blocks()")

    def recompute_state(self) -> Callable[[], contextlib.AbstractContextManager]:
        """Called at each checkpointed forward: a context-manager factory for the state the
        recomputation must see again besides the LoRA scales (none here)."""
        return contextlib.nullcontext

    def set_gradient_checkpointing(self, enabled: bool) -> None:
        """Recompute each of :meth:`checkpointed_blocks`' activations in the backward pass.

        Active only while gradients are enabled (training); each block recomputes with the LoRA
        scales (and :meth:`recompute_state`) it ran with, even after the ``with`` block that set
        them has ended.
        """
        saved = self.__dict__.setdefault("_checkpointed_forwards", {})
        checkpoint_blocks(
            saved, self.checkpointed_blocks() if enabled else (), enabled, self.recompute_state
        )
