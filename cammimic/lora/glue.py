"""The spatial and temporal LoRAs of CamMimic on the denoiser: injection, trainability, scales.

Two LoRA groups (peft "adapters") live on the denoiser at the same time:

- ``"spatial"`` on the projections of spatial self-attention (appearance of the scene),
- ``"temporal"`` on the projections of temporal attention (the camera motion).

Both are injected with plain peft (:func:`peft.inject_adapter_in_model`), because diffusers'
``UNet3DConditionModel`` has no ``PeftAdapterMixin``. Each adapter targets an exact list of
module names (a full-match regex, so ``…attentions.0…attn1.to_q`` never catches
``…temp_attentions.0…attn1.to_q``). A LoRA adds ``ΔW = s·B·A`` to a layer's weight ``W``
(``A``: r×C_in, ``B``: C_out×r, ``s = alpha/r`` times the adapter's scale multiplier).

Which groups are active and which train goes through peft's functional API
(:func:`peft.functional.set_adapter`, :func:`peft.functional.set_requires_grad`). LoRA files
are :mod:`cammimic.lora.files`; the orthogonality loss of stage 2 is
:func:`cammimic.training.orthogonality_loss`.

torch and peft are imported on first use, so ``import cammimic.lora`` stays light.
"""

from __future__ import annotations

import contextlib
import math
import re
import warnings
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

import attrs

from cammimic.components import AttentionLayers
from cammimic.errors import CammimicError

if TYPE_CHECKING:  # pragma: no cover
    import torch

__all__ = [
    "ADAPTERS",
    "LoraSpec",
    "inject_loras",
    "lora_parameters",
    "set_trainable",
    "set_lora_scale",
    "lora_scales",
    "lora_state_dict",
    "set_lora_state_dict",
    # for cammimic.lora.files and cammimic.training
    "check_adapter",
    "lora_layers",
    "injected_adapters",
    "linear_features",
    "adapter_settings",
    "is_trainable",
    "add_group",
    "remove_group",
]

#: The two LoRA groups, in the order they are injected.
ADAPTERS = ("spatial", "temporal")


# --------------------------------------------------------------------------------------------
# The LoRA settings
# --------------------------------------------------------------------------------------------


def _check_rank(instance, attribute, value) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise CammimicError(f"LoRA rank={value!r} is invalid; pass a positive integer (e.g. 32)")


def _check_alpha(instance, attribute, value) -> None:
    if value is None:
        return
    try:
        ok = not isinstance(value, bool) and math.isfinite(float(value)) and float(value) > 0
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise CammimicError(
            f"LoRA alpha={value!r} is invalid; pass a positive number, or None for alpha = rank"
        )


def _check_dropout(instance, attribute, value) -> None:
    try:
        ok = not isinstance(value, bool) and 0.0 <= float(value) < 1.0
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise CammimicError(f"LoRA dropout={value!r} is invalid; pass a number in [0, 1)")


@attrs.frozen
class LoraSpec:
    """Shape of one LoRA group: ``ΔW = (alpha / rank) · B · A`` with ``A`` rank×C_in."""

    #: Rank r of every LoRA of the group (MotionDirector uses 32).
    rank: int = attrs.field(default=32, validator=_check_rank)
    #: peft's ``lora_alpha``; ``None`` means ``alpha = rank`` (scale 1).
    alpha: float | None = attrs.field(default=None, validator=_check_alpha)
    #: Dropout on the LoRA input during training.
    dropout: float = attrs.field(default=0.0, validator=_check_dropout)

    @property
    def lora_alpha(self) -> float:
        """The alpha peft gets: :attr:`alpha`, or :attr:`rank` when that is ``None``."""
        return float(self.rank if self.alpha is None else self.alpha)


# --------------------------------------------------------------------------------------------
# Looking at the model
# --------------------------------------------------------------------------------------------


def check_adapter(adapter: str) -> str:
    """``adapter`` if it is one of :data:`ADAPTERS`, else one clear error."""
    if adapter not in ADAPTERS:
        raise CammimicError(f"LoRA adapter {adapter!r} is unknown. Try one of {list(ADAPTERS)}")
    return adapter


def _scan(unet, adapter: str) -> dict[str, Any]:
    """``{module name: peft LoraLayer}`` of the modules carrying ``adapter``, in module order."""
    from peft.tuners.lora import LoraLayer

    return {
        name: m
        for name, m in unet.named_modules()
        if isinstance(m, LoraLayer) and adapter in m.lora_A
    }


def lora_layers(unet, adapter: str) -> dict[str, Any]:
    """``{module name: peft LoraLayer}`` of one group, in module order; an error if it is absent."""
    layers = _scan(unet, check_adapter(adapter))
    if not layers:
        raise CammimicError(
            f"the denoiser has no {adapter} LoRA; inject it first (inject_loras or load_lora)"
        )
    return layers


def injected_adapters(unet) -> list[str]:
    """Adapters present on ``unet``, in :data:`ADAPTERS` order."""
    config = getattr(unet, "peft_config", None) or {}
    return [a for a in ADAPTERS if a in config and _scan(unet, a)]


def _target_regex(names: Sequence[str]) -> str:
    # peft matches a string target_modules with re.fullmatch on each module name
    return "^(?:" + "|".join(map(re.escape, names)) + ")$"


def linear_features(module) -> tuple[int, int] | None:
    """``(in_features, out_features)`` of a Linear (or of a LoRA-wrapped Linear), else None."""
    import torch

    base = module.get_base_layer() if hasattr(module, "get_base_layer") else module
    if isinstance(base, torch.nn.Linear):
        return int(base.in_features), int(base.out_features)
    return None


def _check_targets(unet, adapter: str, names: Sequence[str]) -> None:
    if not names:
        raise CammimicError(f"no layers given for the {adapter} LoRA; check the backbone's locator")
    if len(set(names)) != len(names):
        dup = next(n for n in names if list(names).count(n) > 1)
        raise CammimicError(f"layer {dup!r} is named twice for the {adapter} LoRA")
    modules = dict(unet.named_modules())
    for name in names:
        if name not in modules:
            raise CammimicError(
                f"layer {name!r} named for the {adapter} LoRA is not in the denoiser "
                f"({type(unet).__name__}); check the backbone's locator"
            )
        if linear_features(modules[name]) is None:
            raise CammimicError(
                f"layer {name!r} named for the {adapter} LoRA is a "
                f"{type(modules[name]).__name__}, not a Linear layer; LoRAs go on Linear layers"
            )


@contextlib.contextmanager
def _seeded(seed: int | None) -> Iterator[None]:
    """Run the block with the CPU generator seeded, leaving the caller's RNG state untouched.

    peft creates LoRA weights on the CPU and then moves them to the base layer's device, so the
    CPU generator alone decides the initialisation.
    """
    import torch

    with torch.random.fork_rng(devices=[]):
        if seed is not None:
            torch.default_generator.manual_seed(int(seed))
        yield


def _inject(unet, adapter: str, names: Sequence[str], rank: int, alpha: float, dropout: float):
    from peft import LoraConfig
    from peft.functional import cast_adapter_dtype, inject_adapter_in_model

    config = LoraConfig(
        r=int(rank),
        lora_alpha=alpha,
        lora_dropout=float(dropout),
        target_modules=_target_regex(names),
        init_lora_weights=True,
        bias="none",
    )
    with warnings.catch_warnings():
        # "Already found a `peft_config` attribute in the model": two adapters is the point
        warnings.filterwarnings("ignore", message=".*peft_config.*", category=UserWarning)
        inject_adapter_in_model(config, unet, adapter_name=adapter)
    # peft gives the LoRA the base layer's dtype; keep it float32 (as PeftModel does) so Adam
    # updates do not vanish in fp16/bf16. The LoRA output is cast back to the base dtype.
    cast_adapter_dtype(unet, adapter_name=adapter, autocast_adapter_dtype=True)
    got = list(_scan(unet, adapter))
    if set(got) != set(names):
        missing = sorted(set(names) - set(got))
        extra = sorted(set(got) - set(names))
        raise CammimicError(
            f"peft put the {adapter} LoRA on the wrong layers "
            f"(missing {missing[:3]}, unexpected {extra[:3]}); this is a bug, please report it"
        )


def _activate_all(unet) -> None:
    """Make every injected group active, all LoRA parameters frozen.

    peft leaves only the newest adapter active after an injection; what trains is then chosen
    with :func:`set_trainable` (peft's :func:`~peft.functional.set_requires_grad`).
    """
    from peft.functional import set_adapter

    set_adapter(unet, injected_adapters(unet), inference_mode=True)


def _lora_param_items(unet, adapter: str) -> list[tuple[str, Any]]:
    marks = (f".lora_A.{adapter}.", f".lora_B.{adapter}.")
    return [(n, p) for n, p in unet.named_parameters() if any(m in n for m in marks)]


# --------------------------------------------------------------------------------------------
# Injection, trainability, scales
# --------------------------------------------------------------------------------------------


def inject_loras(
    unet,
    layers: AttentionLayers,
    spatial: LoraSpec,
    temporal: LoraSpec,
    *,
    init_seed: int | None = None,
) -> None:
    """Put a fresh spatial LoRA on ``layers.spatial`` and a temporal LoRA on ``layers.temporal``.

    Both adapters are active afterwards (peft leaves only the newest one active after an
    injection; :func:`peft.functional.set_adapter` activates both). ``B`` starts at
    zero, so the denoiser's output is unchanged until training. The base weights are frozen and
    the LoRA parameters of both groups trainable (see :func:`set_trainable`). LoRA weights are
    float32 whatever the denoiser's dtype (on the denoiser's device).

    ``init_seed`` seeds the initialisation of ``A`` (Kaiming uniform) without touching the
    caller's random state; ``None`` draws from the current global generator.
    """
    if not isinstance(spatial, LoraSpec) or not isinstance(temporal, LoraSpec):
        raise CammimicError("inject_loras needs a LoraSpec for the spatial and the temporal LoRA")
    present = injected_adapters(unet)
    if present:
        raise CammimicError(
            f"the denoiser already has a {present[0]} LoRA; load the backbone afresh to start over"
        )
    _check_targets(unet, "spatial", layers.spatial)
    _check_targets(unet, "temporal", layers.temporal)
    rng = _seeded(init_seed) if init_seed is not None else contextlib.nullcontext()
    with rng:
        for adapter, names, spec in (
            ("spatial", layers.spatial, spatial),
            ("temporal", layers.temporal, temporal),
        ):
            _inject(unet, adapter, names, spec.rank, spec.lora_alpha, spec.dropout)
    _activate_all(unet)
    unet.requires_grad_(False)
    set_trainable(unet, spatial=True, temporal=True)


def lora_parameters(unet, adapter: str) -> list[torch.nn.Parameter]:
    """The ``A`` and ``B`` parameters of one LoRA group, in module order (A before B)."""
    lora_layers(unet, adapter)
    return [p for _, p in _lora_param_items(unet, adapter)]


def set_trainable(unet, *, spatial: bool, temporal: bool) -> None:
    """Switch gradients on or off for each LoRA group (base weights are left as they are)."""
    from peft.functional import set_requires_grad

    for adapter, on in (("spatial", spatial), ("temporal", temporal)):
        lora_layers(unet, adapter)
        set_requires_grad(unet, adapter, requires_grad=bool(on))


def is_trainable(unet, adapter: str) -> bool:
    """Whether any parameter of one LoRA group requires grad."""
    return any(p.requires_grad for p in lora_parameters(unet, adapter))


def set_lora_scale(unet, adapter: str, scale: float) -> None:
    """Multiply one LoRA group's ``ΔW`` by ``scale``: 0 switches it off, 1 is as trained.

    Uses peft's ``LoraLayer.set_scale``, which sets ``scaling = scale · alpha / r`` (a pure
    multiplier on ``ΔW``; at 0 each layer adds exact zeros to the base output).
    """
    try:
        value = float(scale)
    except (TypeError, ValueError):
        value = float("nan")
    if isinstance(scale, bool) or not math.isfinite(value):
        raise CammimicError(f"LoRA scale {scale!r} for {adapter} is invalid; pass a finite number")
    for layer in lora_layers(unet, adapter).values():
        layer.set_scale(adapter, value)


@contextlib.contextmanager
def lora_scales(unet, **scales: float) -> Iterator[None]:
    """Inside the block, scale LoRA groups by name (``lora_scales(unet, spatial=0)``).

    The exact previous scales are restored on exit, also when the block raises.
    """
    layers = {a: lora_layers(unet, check_adapter(a)) for a in scales}
    saved = [(layer, a, layer.scaling[a]) for a, ls in layers.items() for layer in ls.values()]
    try:
        for adapter, scale in scales.items():
            set_lora_scale(unet, adapter, scale)
        yield
    finally:
        for layer, adapter, value in saved:
            layer.scaling[adapter] = value


def lora_state_dict(unet, adapter: str) -> dict[str, torch.Tensor]:
    """peft's state dict of one group (``<layer>.lora_A.weight`` …) as contiguous CPU copies."""
    from peft import get_peft_model_state_dict

    lora_layers(unet, adapter)
    state = get_peft_model_state_dict(unet, adapter_name=adapter)
    return {k: v.detach().to("cpu").contiguous().clone() for k, v in state.items()}


def set_lora_state_dict(unet, adapter: str, tensors, *, source: str) -> None:
    """Put ``tensors`` (as from :func:`lora_state_dict`) into the injected ``adapter`` group;
    every LoRA weight of the group must be matched, and nothing else given."""
    from peft import set_peft_model_state_dict

    result = set_peft_model_state_dict(unet, tensors, adapter_name=adapter)
    marks = (f".lora_A.{adapter}.", f".lora_B.{adapter}.")
    missing = [k for k in result.missing_keys if any(m in k for m in marks)]
    if result.unexpected_keys or missing:
        raise CammimicError(
            f"loading {source} left {adapter} LoRA weights unmatched (missing {missing[:2]}, unexpected "
            f"{list(result.unexpected_keys)[:2]}); it does not fit this model"
        )


# --------------------------------------------------------------------------------------------
# Replacing a group (what loading a LoRA file does)
# --------------------------------------------------------------------------------------------


def adapter_settings(unet, adapter: str) -> tuple[int, float, float, list[str]]:
    """``(rank, alpha, dropout, target layers)`` of an injected group."""
    layers = lora_layers(unet, adapter)
    first = next(iter(layers.values()))
    config = unet.peft_config[adapter]
    return (
        int(first.r[adapter]),
        float(first.lora_alpha[adapter]),
        float(config.lora_dropout),
        list(layers),
    )


def add_group(
    unet, adapter: str, names: Sequence[str], rank: int, alpha: float, dropout: float
) -> None:
    """Inject one more group (its weights to be overwritten) and activate every group present.

    The caller's RNG stream is left intact and the new group is frozen; the base weights and the
    other group keep whether they train.
    """
    from peft.functional import set_requires_grad

    was = {a: is_trainable(unet, a) for a in injected_adapters(unet)}
    base = [p for n, p in unet.named_parameters() if ".lora_" not in n and p.requires_grad]
    with _seeded(None):
        _inject(unet, adapter, names, rank, alpha, dropout)
    _activate_all(unet)
    for p in base:  # peft's injection freezes everything but the adapters
        p.requires_grad_(True)
    for a, on in was.items():
        set_requires_grad(unet, a, requires_grad=on)


def remove_group(unet, adapter: str) -> None:
    """Delete one injected group from the denoiser (the other is not touched)."""
    from peft.functional import delete_adapter
    from peft.tuners.lora import LoraLayer

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "Adapter x was active which is now deleted …"
        delete_adapter(unet, adapter, prefix="lora_", layer_cls=LoraLayer)
    del unet.peft_config[adapter]
