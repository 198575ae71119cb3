"""The spatial and temporal LoRAs of CamMimic Phase 1: injection, scales, files, orthogonality.

Two LoRA groups (peft "adapters") live on the denoiser at the same time:

- ``"spatial"`` on the projections of spatial self-attention (appearance of the scene),
- ``"temporal"`` on the projections of temporal attention (the camera motion).

Both are injected with plain peft (:func:`peft.inject_adapter_in_model`), because diffusers'
``UNet3DConditionModel`` has no ``PeftAdapterMixin``. Each adapter targets an exact list of
module names (a full-match regex, so ``…attentions.0…attn1.to_q`` never catches
``…temp_attentions.0…attn1.to_q``). A LoRA adds ``ΔW = s·B·A`` to a layer's weight ``W``
(``A``: r×C_in, ``B``: C_out×r, ``s = alpha/r`` times the adapter's scale multiplier).

Files (:func:`save_lora`, :func:`read_lora`, :func:`load_lora`) are safetensors holding one
adapter with peft's key names (``<layer>.lora_A.weight``, ``<layer>.lora_B.weight``) and string
metadata: ``format`` (:data:`FORMAT`), ``adapter``, ``backbone``, ``base_model``,
``fingerprint`` (:func:`unet_fingerprint`), ``rank``, ``alpha``, ``dropout``, ``target_layers``
(a JSON list), ``cammimic_version``, ``peft_version`` and whatever ``extra`` the caller adds.
A file only loads onto a denoiser of the same architecture (fingerprint), and by default only
onto the same backbone and base weights.

The orthogonality loss (stage 2, ``L2 = L_spatial + λ·L_ortho``)
-----------------------------------------------------------------
The paper writes ``L_ortho = ⟨W_spatial_LoRA, W_temporal_LoRA⟩``. Literally that does not
type-check (there are more temporal than spatial layers, of several sizes); what does is to pair
each spatial self-attention projection with the temporal-attention projection of the same block
and role (:attr:`AttentionLayers.pairs`, all C×C) and compare their ``ΔW``. The Frobenius inner
product ``⟨ΔW_s, ΔW_t⟩ = s_s·s_t·tr((B_sᵀB_t)(A_tA_sᵀ))`` and the norms
``‖ΔW‖² = s²·tr((BᵀB)(AAᵀ))`` need only r×r products, never a C×C matrix. Definitions:

``"cosine"`` (default)
    mean over pairs of ``cos² = ⟨ΔW_s,ΔW_t⟩² / (‖ΔW_s‖²‖ΔW_t‖² + eps)``. Scale-free and in
    [0, 1], so the same λ means the same thing at every rank, layer width, LoRA scale and
    training length; it only asks the spatial update to point away from the temporal one, not
    to shrink. It is 0 with zero gradient while a ``B`` is zero (peft starts ``B`` at zero);
    in CamMimic stage 2 starts after stage 1 trained both ``B``, so that does not bite.
``"inner"``
    mean over pairs of ``⟨ΔW_s,ΔW_t⟩²``: the paper's expression, squared so it is a penalty.
    Grows with the fourth power of the LoRA magnitudes, so λ has to be tuned per setting, and
    it can also be lowered by shrinking ``ΔW_s``.
``"subspace"``
    mean over pairs of ``‖A_sA_tᵀ‖² + ‖B_sᵀB_t‖²``: the row and column spaces of the two LoRAs
    orthogonal. Stronger than orthogonal ``ΔW`` and non-zero from step 0, but not scale-free.

The temporal side is detached by default (stage 2 trains only the spatial LoRA). Everything is
computed in float32 whatever the parameter dtype.

torch, peft and safetensors are imported on first use, so ``import cammimic.lora`` stays light.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import re
import warnings
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs

from cammimic.components import AttentionLayers
from cammimic.errors import CammimicError

if TYPE_CHECKING:  # pragma: no cover
    import torch

__all__ = [
    "ADAPTERS",
    "FORMAT",
    "ORTHOGONALITY_DEFINITIONS",
    "LoraSpec",
    "inject_loras",
    "lora_parameters",
    "set_trainable",
    "set_lora_scale",
    "lora_scales",
    "lora_state_dict",
    "unet_fingerprint",
    "save_lora",
    "read_lora",
    "load_lora",
    "orthogonality_loss",
]

#: The two LoRA groups, in the order they are injected.
ADAPTERS = ("spatial", "temporal")
#: ``format`` metadata of a cammimic LoRA file.
FORMAT = "cammimic-lora/1"
#: Choices of :func:`orthogonality_loss`'s ``definition``.
ORTHOGONALITY_DEFINITIONS = ("cosine", "inner", "subspace")

#: Metadata keys :func:`save_lora` writes itself (``extra`` may not use them).
_RESERVED = (
    "format", "adapter", "backbone", "base_model", "fingerprint", "rank", "alpha", "dropout",
    "target_layers", "cammimic_version", "peft_version",
)
#: Metadata keys a file must have to be loaded.
_REQUIRED = (
    "format", "adapter", "backbone", "base_model", "fingerprint", "rank", "alpha", "dropout",
    "target_layers",
)
_EPS = 1e-12


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


def _check_adapter(adapter: str) -> str:
    if adapter not in ADAPTERS:
        raise CammimicError(f"LoRA adapter {adapter!r} is unknown. Try one of {list(ADAPTERS)}")
    return adapter


def _lora_layers(unet, adapter: str) -> dict[str, Any]:
    """``{module name: peft LoraLayer}`` of the modules carrying ``adapter``, in module order."""
    from peft.tuners.lora import LoraLayer

    return {
        name: m
        for name, m in unet.named_modules()
        if isinstance(m, LoraLayer) and adapter in m.lora_A
    }


def _require_layers(unet, adapter: str) -> dict[str, Any]:
    layers = _lora_layers(unet, _check_adapter(adapter))
    if not layers:
        raise CammimicError(
            f"the denoiser has no {adapter} LoRA; inject it first (inject_loras or load_lora)"
        )
    return layers


def _injected(unet) -> list[str]:
    """Adapters present on ``unet``, in :data:`ADAPTERS` order."""
    config = getattr(unet, "peft_config", None) or {}
    return [a for a in ADAPTERS if a in config and _lora_layers(unet, a)]


def _target_regex(names: Sequence[str]) -> str:
    # peft matches a string target_modules with re.fullmatch on each module name
    return "^(?:" + "|".join(map(re.escape, names)) + ")$"


def _linear_features(module) -> tuple[int, int] | None:
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
        if _linear_features(modules[name]) is None:
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
    from peft import LoraConfig, inject_adapter_in_model
    from peft.tuners.tuners_utils import cast_adapter_dtype

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
    got = list(_lora_layers(unet, adapter))
    if set(got) != set(names):
        missing = sorted(set(names) - set(got))
        extra = sorted(set(got) - set(names))
        raise CammimicError(
            f"peft put the {adapter} LoRA on the wrong layers "
            f"(missing {missing[:3]}, unexpected {extra[:3]}); this is a bug, please report it"
        )


def _activate_all(unet) -> None:
    """Make every injected adapter active, keeping each parameter's ``requires_grad``.

    peft's ``set_adapter`` turns gradients on for the adapters it activates; the caller's
    choice of what trains is restored afterwards.
    """
    from peft.tuners.tuners_utils import set_adapter

    flags = {id(p): p.requires_grad for p in unet.parameters()}
    set_adapter(unet, _injected(unet))
    for p in unet.parameters():
        p.requires_grad_(flags.get(id(p), False))


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
    injection; :func:`peft.tuners.tuners_utils.set_adapter` activates both). ``B`` starts at
    zero, so the denoiser's output is unchanged until training. The base weights are frozen and
    the LoRA parameters of both groups trainable (see :func:`set_trainable`). LoRA weights are
    float32 whatever the denoiser's dtype (on the denoiser's device).

    ``init_seed`` seeds the initialisation of ``A`` (Kaiming uniform) without touching the
    caller's random state; ``None`` draws from the current global generator.
    """
    import torch

    if not isinstance(spatial, LoraSpec) or not isinstance(temporal, LoraSpec):
        raise CammimicError("inject_loras needs a LoraSpec for the spatial and the temporal LoRA")
    present = _injected(unet)
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
    with torch.no_grad():
        for _, p in unet.named_parameters():
            p.requires_grad_(False)
    set_trainable(unet, spatial=True, temporal=True)


def lora_parameters(unet, adapter: str) -> list[torch.nn.Parameter]:
    """The ``A`` and ``B`` parameters of one LoRA group, in module order (A before B)."""
    _require_layers(unet, adapter)
    return [p for _, p in _lora_param_items(unet, adapter)]


def set_trainable(unet, *, spatial: bool, temporal: bool) -> None:
    """Switch gradients on or off for each LoRA group (base weights are left as they are)."""
    for adapter, on in (("spatial", spatial), ("temporal", temporal)):
        for p in lora_parameters(unet, adapter):
            p.requires_grad_(bool(on))


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
    for layer in _require_layers(unet, adapter).values():
        layer.set_scale(adapter, value)


@contextlib.contextmanager
def lora_scales(unet, **scales: float) -> Iterator[None]:
    """Inside the block, scale LoRA groups by name (``lora_scales(unet, spatial=0)``).

    The exact previous scales are restored on exit, also when the block raises.
    """
    layers = {a: _require_layers(unet, _check_adapter(a)) for a in scales}
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

    _require_layers(unet, adapter)
    state = get_peft_model_state_dict(unet, adapter_name=adapter)
    return {k: v.detach().to("cpu").contiguous().clone() for k, v in state.items()}


def unet_fingerprint(unet) -> str:
    """A 16-hex-digit hash of the denoiser's architecture.

    The sha256 of the sorted JSON of ``unet.config`` without its private ``_`` keys (names,
    versions, defaults used), so the same architecture gets the same fingerprint whatever the
    weights or where they came from. A module without a ``config`` is hashed by its parameter
    and buffer names and shapes instead (LoRA weights excluded).
    """
    config = getattr(unet, "config", None)
    if config is not None:
        data: Any = {str(k): v for k, v in dict(config).items() if not str(k).startswith("_")}
    else:
        data = sorted(
            [k.replace(".base_layer.", "."), list(v.shape)]
            for k, v in unet.state_dict().items()
            if ".lora_" not in k
        )
    text = json.dumps(data, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


# --------------------------------------------------------------------------------------------
# Files
# --------------------------------------------------------------------------------------------


def _adapter_settings(unet, adapter: str) -> tuple[int, float, float, list[str]]:
    """``(rank, alpha, dropout, target layers)`` of an injected group."""
    layers = _require_layers(unet, adapter)
    first = next(iter(layers.values()))
    config = unet.peft_config[adapter]
    return (
        int(first.r[adapter]),
        float(first.lora_alpha[adapter]),
        float(config.lora_dropout),
        list(layers),
    )


def save_lora(
    path: str | os.PathLike,
    unet,
    adapter: str,
    *,
    backbone: str,
    base_model: str,
    fingerprint: str,
    extra: dict[str, str] | None = None,
) -> Path:
    """Write one LoRA group to a safetensors file with its metadata, atomically.

    ``backbone`` is the registered backbone name, ``base_model`` the Hub id or directory of the
    weights it was trained on, ``fingerprint`` the denoiser's :func:`unet_fingerprint`.
    ``extra`` adds string metadata (e.g. the prompt or the rare token). The file is written
    under a temporary name next to ``path`` and renamed into place, so an existing file is only
    replaced by a complete one. Returns the path written.
    """
    from peft import __version__ as peft_version
    from safetensors.torch import save

    from cammimic._version import __version__
    from cammimic.io import atomic_path

    p = Path(path)
    rank, alpha, dropout, targets = _adapter_settings(unet, _check_adapter(adapter))
    metadata = {
        "format": FORMAT,
        "adapter": adapter,
        "backbone": str(backbone),
        "base_model": str(base_model),
        "fingerprint": str(fingerprint),
        "rank": str(rank),
        "alpha": repr(alpha),
        "dropout": repr(dropout),
        "target_layers": json.dumps(targets),
        "cammimic_version": __version__,
        "peft_version": peft_version,
    }
    for key, value in (extra or {}).items():
        if key in _RESERVED:
            raise CammimicError(
                f"extra metadata key {key!r} for {p} is reserved; choose another name"
            )
        if not isinstance(key, str) or not isinstance(value, str):
            raise CammimicError(
                f"extra metadata {key!r}: {value!r} for {p} is not a string; "
                f"convert it (e.g. json.dumps) before saving"
            )
        metadata[key] = value
    tensors = lora_state_dict(unet, adapter)
    data = _sorted_header(save(tensors, metadata=metadata))
    with atomic_path(p) as tmp:
        try:
            tmp.write_bytes(data)
        except OSError as exc:
            raise CammimicError(f"writing LoRA {p} failed ({exc}); check disk space") from exc
    return p


def _sorted_header(data: bytes) -> bytes:
    """safetensors bytes with the metadata keys in sorted order.

    safetensors keeps the metadata in a Rust ``HashMap``, so its key order (and the file's bytes)
    changes from process to process; two identical runs must write identical files.
    """
    n = int.from_bytes(data[:8], "little")
    header = json.loads(data[8 : 8 + n])
    meta = header.pop("__metadata__", None)
    ordered = ({"__metadata__": dict(sorted(meta.items()))} if meta is not None else {}) | header
    text = json.dumps(ordered, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    text += b" " * (-len(text) % 8)  # safetensors aligns the data to 8 bytes
    return len(text).to_bytes(8, "little") + text + data[8 + n :]


def _short(value: Any, limit: int = 60) -> str:
    """``repr`` of a value from a file, cut to ``limit`` characters for one-line messages."""
    text = repr(value) if not isinstance(value, str) or len(value) <= limit else repr(value[:limit])
    return text if len(text) <= limit + 2 else text[:limit] + "…"


def _cut(text: str, limit: int = 80) -> str:
    """A metadata string cut to ``limit`` characters for one-line messages."""
    return text if len(text) <= limit else text[:limit] + "…"


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    text = text if len(text) <= 200 else text[:200] + "…"
    return text or type(exc).__name__


def read_lora(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """The tensors (on the CPU) and metadata of a cammimic LoRA file, after checking it is one."""
    from safetensors import safe_open

    p = Path(path)
    if not p.exists():
        raise CammimicError(f"LoRA file {p} does not exist; check the path")
    if not p.is_file():
        raise CammimicError(f"LoRA file {p} is not a file; pass a .safetensors file")
    try:
        with safe_open(str(p), framework="pt", device="cpu") as f:
            metadata = dict(f.metadata() or {})
            fmt = metadata.get("format")
            if fmt != FORMAT:
                if fmt and fmt.startswith("cammimic-lora/"):
                    why = f"its format is {_short(fmt)} but this cammimic reads {FORMAT!r}; upgrade cammimic"
                elif fmt:
                    why = f"its metadata format is {_short(fmt)}, not {FORMAT!r}"
                else:
                    why = "it has no cammimic metadata"
                raise CammimicError(
                    f"{p} is not a cammimic LoRA file ({why}); pass a file written by "
                    f"cammimic's finetuning (save_lora)"
                )
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except CammimicError:
        raise
    except Exception as exc:  # safetensors raises its own error type for damaged headers
        raise CammimicError(
            f"{p} is not a readable safetensors file ({_one_line(exc)}); pass a LoRA saved by cammimic"
        ) from exc
    missing = [k for k in _REQUIRED if k not in metadata]
    if missing:
        raise CammimicError(f"LoRA file {p} lacks metadata {missing}; it is damaged, retrain it")
    if metadata["adapter"] not in ADAPTERS:
        raise CammimicError(
            f"LoRA file {p} holds an adapter {_short(metadata['adapter'])}; expected one of {list(ADAPTERS)}"
        )
    try:
        rank = int(metadata["rank"])
        alpha = float(metadata["alpha"])
        dropout = float(metadata["dropout"])
        if rank < 1:
            raise ValueError(f"rank {rank} is not positive")
        if not math.isfinite(alpha):
            raise ValueError(f"alpha is {alpha}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout {dropout} is outside [0, 1)")
        targets = json.loads(metadata["target_layers"])
        if not isinstance(targets, list) or not all(isinstance(t, str) for t in targets):
            raise ValueError("target_layers is not a list of names")
    except (ValueError, RecursionError) as exc:  # RecursionError: absurdly nested JSON
        why = "target_layers nests too deeply" if isinstance(exc, RecursionError) else _one_line(exc)
        raise CammimicError(f"LoRA file {p} has damaged metadata ({why}); retrain it") from exc
    expected = {f"{t}.lora_{ab}.weight" for t in targets for ab in "AB"}
    if set(tensors) != expected:
        odd = sorted(set(tensors) ^ expected)
        raise CammimicError(
            f"LoRA file {p} does not hold exactly the LoRA weights of its target_layers "
            f"(e.g. {_short(odd[0])}); it is damaged, retrain it"
        )
    for t in targets:
        a, b = tensors[f"{t}.lora_A.weight"], tensors[f"{t}.lora_B.weight"]
        if a.ndim != 2 or b.ndim != 2 or a.shape[0] != rank or b.shape[1] != rank:
            raise CammimicError(
                f"LoRA file {p}: layer {_short(t)} has A {tuple(a.shape)}, B {tuple(b.shape)}, "
                f"not rank {rank}; it is damaged, retrain it"
            )
    for key, tensor in tensors.items():
        if not tensor.is_floating_point() or not bool(tensor.isfinite().all()):
            what = "is not floating point" if not tensor.is_floating_point() else "holds NaN or inf values"
            raise CammimicError(
                f"LoRA file {p}: {_short(key)} {what}; the finetuning that wrote it diverged, "
                "retrain it (e.g. with a lower --lr)"
            )
    return tensors, metadata


def _first_shape_difference(unet, tensors, targets: Sequence[str]) -> str | None:
    modules = dict(unet.named_modules())
    for t in targets:
        a, b = tensors[f"{t}.lora_A.weight"], tensors[f"{t}.lora_B.weight"]
        want = (int(a.shape[1]), int(b.shape[0]))
        if t not in modules:
            return f"layer {t!r} does not exist here"
        have = _linear_features(modules[t])
        if have is None:
            return f"layer {t!r} is a {type(modules[t]).__name__} here, not a Linear layer"
        if have != want:
            return f"layer {t!r} maps {want[0]}->{want[1]} channels in the file but {have[0]}->{have[1]} here"
    return None


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


def load_lora(
    path: str | os.PathLike,
    unet,
    adapter: str,
    *,
    backbone: str,
    base_model: str,
    fingerprint: str,
    allow_other_base: bool = False,
) -> dict[str, str]:
    """Load a LoRA file as the ``adapter`` group of ``unet``; returns the file's metadata.

    Everything is checked before the model is touched: the file must hold that adapter
    (a temporal LoRA never loads as the spatial one), match the denoiser's architecture
    (``fingerprint``: always refused otherwise), and come from the same ``backbone`` and
    ``base_model`` (refused unless ``allow_other_base``).

    If ``unet`` has no such group yet, it is injected from the file's rank, alpha, dropout and
    target layers, and every group present is activated. If it has one with other settings
    (rank, alpha, dropout or layers), that group is deleted and replaced by the file's:
    loading a LoRA means "use this one", and the other group is never affected. After loading
    the group's scale is 1 (as trained) and its parameters are frozen (``requires_grad``
    False; call :func:`set_trainable` to train it further); the other group keeps its state.
    """
    import torch

    _check_adapter(adapter)
    p = Path(path)
    tensors, meta = read_lora(p)
    if meta["adapter"] != adapter:
        raise CammimicError(
            f"{p} holds a {meta['adapter']} LoRA and cannot be loaded as the {adapter} LoRA; "
            f"pass it as the {meta['adapter']} LoRA"
        )
    targets = json.loads(meta["target_layers"])
    if meta["fingerprint"] != str(fingerprint):
        diff = _first_shape_difference(unet, tensors, targets)
        raise CammimicError(
            f"{p} was trained on a denoiser of another architecture (fingerprint "
            f"{_cut(meta['fingerprint'])}, backbone \"{_cut(meta['backbone'])}\", base {_cut(meta['base_model'])}) "
            f"than this run's (fingerprint {fingerprint}, backbone \"{backbone}\", base {base_model})"
            + (f"; {diff}" if diff else "")
            + "; a LoRA only loads onto the architecture it was trained on"
        )
    if (meta["backbone"], meta["base_model"]) != (str(backbone), str(base_model)):
        if not allow_other_base:
            raise CammimicError(
                f"{p} was trained on backbone \"{_cut(meta['backbone'])}\" (base {_cut(meta['base_model'])}) "
                f"but this run uses \"{backbone}\" (base {base_model}); pass "
                f"allow_other_base=True (--allow-other-base) to load it anyway"
            )
    diff = _first_shape_difference(unet, tensors, targets)
    if diff:
        raise CammimicError(f"{p} does not fit this denoiser: {diff}")

    rank, alpha, dropout = int(meta["rank"]), float(meta["alpha"]), float(meta["dropout"])
    # what trains stays as it was (peft's inject and set_adapter both change requires_grad)
    flags = {n: q.requires_grad for n, q in unet.named_parameters()}
    if adapter in _injected(unet):
        current = _adapter_settings(unet, adapter)
        if current[:3] != (rank, alpha, dropout) or set(current[3]) != set(targets):
            _delete_adapter(unet, adapter)
    if adapter not in _injected(unet):
        with _seeded(None):  # the weights are overwritten; keep the caller's RNG stream intact
            _inject(unet, adapter, targets, rank, alpha, dropout)
        _activate_all(unet)
    with torch.no_grad():
        for n, q in unet.named_parameters():
            q.requires_grad_(flags.get(n, False))

    set_lora_state_dict(unet, adapter, tensors, source=str(p))
    set_lora_scale(unet, adapter, 1.0)
    for q in lora_parameters(unet, adapter):
        q.requires_grad_(False)
    return meta


def _delete_adapter(unet, adapter: str) -> None:
    from peft.tuners.lora import LoraLayer
    from peft.tuners.tuners_utils import delete_adapter

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "Adapter x was active which is now deleted …"
        delete_adapter(unet, adapter, prefix="lora_", layer_cls=LoraLayer)
    del unet.peft_config[adapter]


# --------------------------------------------------------------------------------------------
# The orthogonality loss
# --------------------------------------------------------------------------------------------


def _factors(layer, adapter: str, detach: bool):
    """``(A, B, s)`` of one layer's LoRA in float32."""
    a = layer.lora_A[adapter].weight.float()
    b = layer.lora_B[adapter].weight.float()
    if detach:
        a, b = a.detach(), b.detach()
    return a, b, float(layer.scaling[adapter])


def orthogonality_loss(
    unet,
    pairs: Iterable[tuple[str, str]],
    *,
    definition: str = "cosine",
    detach_temporal: bool = True,
) -> torch.Tensor:
    """How far each spatial LoRA is from orthogonal to its paired temporal LoRA (0-d, float32).

    ``pairs`` are ``(spatial layer, temporal layer)`` names (:attr:`AttentionLayers.pairs`).
    ``definition`` is one of :data:`ORTHOGONALITY_DEFINITIONS` (see the module docstring);
    ``detach_temporal`` stops gradients into the temporal LoRA. Only r×r matrices are formed.
    """
    import torch

    if definition not in ORTHOGONALITY_DEFINITIONS:
        raise CammimicError(
            f"orthogonality definition {definition!r} is unknown. "
            f"Try one of {list(ORTHOGONALITY_DEFINITIONS)}"
        )
    pairs = [tuple(p) for p in pairs]
    if not pairs:
        raise CammimicError(
            "the orthogonality loss got no (spatial, temporal) layer pairs; the backbone's "
            "locator must pair them, or set the orthogonality weight to 0"
        )
    spatial = _require_layers(unet, "spatial")
    temporal = _require_layers(unet, "temporal")
    terms = []
    for s_name, t_name in pairs:
        if s_name not in spatial or t_name not in temporal:
            which = f"{s_name!r} has no spatial" if s_name not in spatial else f"{t_name!r} has no temporal"
            raise CammimicError(f"orthogonality pair ({s_name!r}, {t_name!r}): {which} LoRA")
        a_s, b_s, s_s = _factors(spatial[s_name], "spatial", detach=False)
        a_t, b_t, s_t = _factors(temporal[t_name], "temporal", detach=detach_temporal)
        if a_s.shape[1] != a_t.shape[1] or b_s.shape[0] != b_t.shape[0]:
            raise CammimicError(
                f"orthogonality pair ({s_name!r}, {t_name!r}) pairs layers of different sizes "
                f"({a_s.shape[1]}->{b_s.shape[0]} vs {a_t.shape[1]}->{b_t.shape[0]}); "
                f"check the backbone's locator"
            )
        q = a_s @ a_t.T  # (r_s, r_t) = A_s A_tᵀ
        g = b_s.T @ b_t  # (r_s, r_t) = B_sᵀ B_t
        if definition == "subspace":
            terms.append(q.square().sum() + g.square().sum())
            continue
        # ⟨B_sA_s, B_tA_t⟩ = tr(A_sᵀB_sᵀB_tA_t) = tr(G Qᵀ) = Σ G∘Q
        inner = (s_s * s_t) * (g * q).sum()
        if definition == "inner":
            terms.append(inner.square())
            continue
        norm_s = (s_s * s_s) * ((b_s.T @ b_s) * (a_s @ a_s.T)).sum()
        norm_t = (s_t * s_t) * ((b_t.T @ b_t) * (a_t @ a_t.T)).sum()
        terms.append(inner.square() / (norm_s * norm_t + _EPS))
    return torch.stack(terms).mean()
