"""cammimic LoRA files: one LoRA group as safetensors with the metadata that says where it fits.

Files (:func:`save_lora`, :func:`read_lora`, :func:`load_lora`) are safetensors holding one
adapter with peft's key names (``<layer>.lora_A.weight``, ``<layer>.lora_B.weight``) and string
metadata: ``format`` (:data:`FORMAT`), ``adapter``, ``backbone``, ``base_model``,
``fingerprint`` (:func:`unet_fingerprint`), ``rank``, ``alpha``, ``dropout``, ``target_layers``
(a JSON list), ``cammimic_version``, ``peft_version`` and whatever ``extra`` the caller adds.
A file only loads onto a denoiser of the same architecture (fingerprint), and by default only
onto the same backbone and base weights. Nothing in a file executes code (no pickle).

torch, peft and safetensors are imported on first use.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cammimic.errors import CammimicError, one_line
from cammimic.lora.glue import (
    ADAPTERS,
    adapter_settings,
    add_group,
    check_adapter,
    injected_adapters,
    linear_features,
    lora_state_dict,
    remove_group,
    set_lora_scale,
    set_lora_state_dict,
)

if TYPE_CHECKING:  # pragma: no cover
    import torch

__all__ = ["FORMAT", "unet_fingerprint", "save_lora", "read_lora", "load_lora"]

#: ``format`` metadata of a cammimic LoRA file.
FORMAT = "cammimic-lora/1"

#: Metadata keys :func:`save_lora` writes itself (``extra`` may not use them).
_RESERVED = (
    "format",
    "adapter",
    "backbone",
    "base_model",
    "fingerprint",
    "rank",
    "alpha",
    "dropout",
    "target_layers",
    "cammimic_version",
    "peft_version",
)
#: The largest safetensors header (metadata and tensor table) :func:`read_lora` reads; a
#: cammimic LoRA's is well under 1 MB even with every layer of a large denoiser adapted.
MAX_HEADER_BYTES = 8 * 2**20
#: The largest LoRA alpha a file may hold (the config's ``[lora] alpha`` range); the scale is alpha/rank.
MAX_ALPHA = 1e6
#: Metadata keys a file must have to be loaded.
_REQUIRED = (
    "format",
    "adapter",
    "backbone",
    "base_model",
    "fingerprint",
    "rank",
    "alpha",
    "dropout",
    "target_layers",
)


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
    from cammimic.io.files import bounded

    p = Path(path)
    rank, alpha, dropout, targets = adapter_settings(unet, check_adapter(adapter))
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
        metadata[key] = bounded(
            value
        )  # a 50 MB prompt is recorded as 4,000 characters and its hash
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


def _check_header_size(p: Path) -> None:
    """Refuse a file whose safetensors header is larger than :data:`MAX_HEADER_BYTES` before
    anything parses it (a header of 90 MB of metadata would be read and recorded whole)."""
    try:
        with open(p, "rb") as f:
            head = f.read(8)
    except OSError as exc:
        raise CammimicError(
            f"LoRA file {p} cannot be read ({one_line(exc, name=False)}); check its permissions"
        ) from exc
    if len(head) < 8:
        raise CammimicError(
            f"{p} is not a readable safetensors file (shorter than its header); "
            "pass a LoRA saved by cammimic"
        )
    size = int.from_bytes(head, "little")
    if size > p.stat().st_size - 8:
        raise CammimicError(
            f"{p} is not a readable safetensors file (its header would be longer than the file); "
            "pass a LoRA saved by cammimic"
        )
    if size > MAX_HEADER_BYTES:
        raise CammimicError(
            f"LoRA file {p} has a {size / 2**20:.1f} MB header; a cammimic LoRA's is under "
            f"{MAX_HEADER_BYTES / 2**20:.0f} MB, so this one is damaged or carries foreign metadata: "
            "pass a LoRA saved by cammimic"
        )


def read_lora(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """The tensors (on the CPU) and metadata of a cammimic LoRA file, after checking it is one."""
    from safetensors import safe_open

    p = Path(path)
    if not p.exists():
        raise CammimicError(f"LoRA file {p} does not exist; check the path")
    if not p.is_file():
        raise CammimicError(f"LoRA file {p} is not a file; pass a .safetensors file")
    _check_header_size(p)
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
            f"{p} is not a readable safetensors file ({one_line(exc, name=False)}); pass a LoRA saved by cammimic"
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
        if not 0 < alpha <= MAX_ALPHA:  # 1e30 or a negative alpha gave an all-black video
            raise CammimicError(
                f"LoRA file {p} has alpha {alpha:g}; a LoRA's alpha must be in (0, {MAX_ALPHA:g}] (its scale is "
                f"alpha/rank, rank {rank}): the file was edited or damaged, retrain it or restore its alpha"
            )
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout {dropout} is outside [0, 1)")
        targets = json.loads(metadata["target_layers"])
        if not isinstance(targets, list) or not all(isinstance(t, str) for t in targets):
            raise ValueError("target_layers is not a list of names")
    except (ValueError, RecursionError) as exc:  # RecursionError: absurdly nested JSON
        why = (
            "target_layers nests too deeply"
            if isinstance(exc, RecursionError)
            else one_line(exc, name=False)
        )
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
            what = (
                "is not floating point"
                if not tensor.is_floating_point()
                else "holds NaN or inf values"
            )
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
        have = linear_features(modules[t])
        if have is None:
            return f"layer {t!r} is a {type(modules[t]).__name__} here, not a Linear layer"
        if have != want:
            return f"layer {t!r} maps {want[0]}->{want[1]} channels in the file but {have[0]}->{have[1]} here"
    return None


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
    from peft.functional import set_requires_grad

    check_adapter(adapter)
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
            f'{_cut(meta["fingerprint"])}, backbone "{_cut(meta["backbone"])}", base {_cut(meta["base_model"])}) '
            f'than this run\'s (fingerprint {fingerprint}, backbone "{backbone}", base {base_model})'
            + (f"; {diff}" if diff else "")
            + "; a LoRA only loads onto the architecture it was trained on"
        )
    if (meta["backbone"], meta["base_model"]) != (str(backbone), str(base_model)):
        if not allow_other_base:
            raise CammimicError(
                f'{p} was trained on backbone "{_cut(meta["backbone"])}" (base {_cut(meta["base_model"])}) '
                f'but this run uses "{backbone}" (base {base_model}); pass '
                f"allow_other_base=True (--allow-other-base) to load it anyway"
            )
    diff = _first_shape_difference(unet, tensors, targets)
    if diff:
        raise CammimicError(f"{p} does not fit this denoiser: {diff}")

    rank, alpha, dropout = int(meta["rank"]), float(meta["alpha"]), float(meta["dropout"])
    if adapter in injected_adapters(unet):
        current = adapter_settings(unet, adapter)
        if current[:3] != (rank, alpha, dropout) or set(current[3]) != set(targets):
            remove_group(unet, adapter)
    if adapter not in injected_adapters(unet):
        add_group(unet, adapter, targets, rank, alpha, dropout)

    set_lora_state_dict(unet, adapter, tensors, source=str(p))
    set_lora_scale(unet, adapter, 1.0)
    set_requires_grad(unet, adapter, requires_grad=False)
    return meta
