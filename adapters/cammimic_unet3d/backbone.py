"""Loading and running a diffusers UNet3D text-to-video model (zeroscope, ModelScope).

:class:`UNet3DAdapter` is what the ``zeroscope`` and ``modelscope`` factories return; its
``load`` brings the weights and returns a :class:`UNet3DBackbone`, which implements
:class:`cammimic.components.Backbone` on the models themselves (diffusers'
``TextToVideoSDPipeline`` is deprecated, so cammimic owns the loop).

Two things diffusers' ``UNet3DConditionModel`` lacks are provided here without forking it:

- :meth:`UNet3DBackbone.temporal_bypass`: every temporal module (``transformer_in``,
  ``temp_attentions.*``, ``temp_convs.*``) becomes an identity, so a one-frame latent runs
  through the image path alone (MotionDirector's spatial pass).
- :meth:`UNet3DBackbone.set_gradient_checkpointing`: ``UNet3DConditionModel`` sets
  ``_supports_gradient_checkpointing = False``, so its ``enable_gradient_checkpointing()``
  raises ``ValueError``; we checkpoint each down/mid/up block instead.
"""

from __future__ import annotations

import contextlib
import os
import re
import warnings
from pathlib import Path
from typing import Any, ClassVar

import attrs
import numpy as np
import torch
from einops import rearrange

from cammimic.devices import resolve_device
from cammimic.errors import CammimicError

__all__ = ["SUBFOLDERS", "UNet3DAdapter", "UNet3DBackbone", "resolve_dtype"]

#: What a diffusers-layout weights directory must contain.
SUBFOLDERS = ("unet", "vae", "text_encoder", "tokenizer", "scheduler")
ATTENTION_CHOICES = ("sdpa", "default")
SAMPLERS = ("ddim", "dpm")
_DTYPES = {
    "float32": torch.float32, "fp32": torch.float32,
    "float16": torch.float16, "fp16": torch.float16, "half": torch.float16,
    "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
}
_HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+")
_MISSING = object()


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0] if text else ''}".rstrip(": ")


def _truthy(value: str | None) -> bool:
    return (value or "").strip().upper() in {"1", "ON", "YES", "TRUE"}


def hub_offline() -> bool:
    """Whether the Hub is off, read from the environment now (huggingface_hub reads it at import)."""
    from huggingface_hub import constants

    env = os.environ
    return any(_truthy(env.get(k)) for k in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")) or bool(constants.HF_HUB_OFFLINE)


def hub_unreachable(timeout: float = 1.5) -> str | None:
    """``None`` if a TCP connection to the Hub (or the HTTPS proxy) opens within ``timeout``
    seconds, else why not, as a phrase. Name resolution runs in a thread so it cannot hang us."""
    import socket
    import threading
    from urllib.parse import urlsplit

    from huggingface_hub import constants

    env = os.environ
    endpoint = env.get("HF_ENDPOINT") or constants.ENDPOINT
    proxy = env.get("HTTPS_PROXY") or env.get("https_proxy") or env.get("ALL_PROXY") or env.get("all_proxy")
    target = urlsplit(proxy if proxy and "://" in proxy else f"http://{proxy}" if proxy else endpoint)
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
        return f"{what} cannot be reached ({_first_line(outcome[0])[:80]})"
    return None


def hub_cache_dir() -> str:
    """The Hugging Face Hub cache, read from the environment now (same rules as huggingface_hub)."""
    from huggingface_hub import constants

    env = os.environ
    path = env.get("HF_HUB_CACHE") or env.get("HUGGINGFACE_HUB_CACHE")
    if not path and env.get("HF_HOME"):
        path = os.path.join(env["HF_HOME"], "hub")
    return os.path.expandvars(os.path.expanduser(path)) if path else constants.HF_HUB_CACHE


def _hub_errors() -> tuple[type[BaseException], ...]:
    """Exceptions that mean "the weights could not be fetched" (not a bug in cammimic)."""
    from huggingface_hub import errors

    kinds: list[type[BaseException]] = [OSError, errors.HfHubHTTPError, errors.EntryNotFoundError,
                                        errors.HFValidationError]
    with contextlib.suppress(ImportError):
        import httpx

        kinds.append(httpx.HTTPError)
    with contextlib.suppress(ImportError):
        import requests

        kinds.append(requests.RequestException)
    return tuple(kinds)


def resolve_dtype(torch_dtype: Any, device: torch.device) -> torch.dtype:
    """``None``/``"auto"``: bfloat16 on CUDA (float16 where the GPU lacks bfloat16), float32 on CPU.

    bfloat16 is the safer half type for finetuning the UNet3D: it has float32's exponent range,
    so its gradients neither underflow nor need a loss scaler (float16 does; see
    :func:`cammimic.training.mixed_precision`), and the zeroscope VAE does not overflow in it.
    """
    if torch_dtype is None or torch_dtype == "auto":
        if device.type != "cuda":
            return torch.float32
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if isinstance(torch_dtype, torch.dtype):
        dtype = torch_dtype
    elif isinstance(torch_dtype, str) and torch_dtype.removeprefix("torch.") in _DTYPES:
        dtype = _DTYPES[torch_dtype.removeprefix("torch.")]
    else:
        raise CammimicError(
            f"torch_dtype '{torch_dtype}' is unknown. Try one of ['auto', 'float32', 'float16', 'bfloat16']"
        )
    if dtype not in (torch.float32, torch.float16, torch.bfloat16):
        raise CammimicError(f"torch_dtype {dtype} is not supported; use float32, float16 or bfloat16")
    if dtype == torch.float16 and device.type == "cpu":
        raise CammimicError("torch_dtype float16 is not supported on the CPU; use float32 (or bfloat16)")
    return dtype


def _looks_local(weights: str) -> bool:
    """A path the user meant as a directory rather than a Hub id like ``owner/name``."""
    if weights.startswith((".", "/", "~")) or (os.altsep and weights.startswith(os.altsep)):
        return True
    has_sep = os.sep in weights or bool(os.altsep and os.altsep in weights)
    return has_sep and not _HUB_ID.fullmatch(weights)


@attrs.define
class UNet3DAdapter:
    """A diffusers UNet3D text-to-video backbone: its native setting and how to load it.

    Implements :class:`cammimic.components.BackboneAdapter`. The fields after
    ``vae_scale_factor`` are the defaults of :meth:`load` (set from the ``[backbone]`` config).
    """

    name: str
    default_weights: str
    default_size: tuple[int, int]  #: native (width, height)
    default_num_frames: int
    vae_scale_factor: int = 8
    revision: str | None = None
    variant: str | None = None
    torch_dtype: Any = None  #: ``None``/``"auto"``: bfloat16 on CUDA (else float16), float32 on CPU
    vae_batch_size: int = 8  #: frames per VAE call
    attention: str = "sdpa"  #: ``"sdpa"`` (PyTorch scaled-dot-product) or ``"default"``
    #: the sampler names :meth:`UNet3DBackbone.sampling_scheduler` takes; the first is the default
    samplers: ClassVar[tuple[str, ...]] = SAMPLERS
    #: what [sampling] leaves to the backbone: zeroscope's and ModelScope's pipeline values
    sampling_defaults: ClassVar[dict[str, Any]] = {"guidance_scale": 9.0, "negative_prompt": "", "steps": 50}

    @property
    def max_frames(self) -> int:
        """The frames the model samples at once: what its weights folder states
        (``cammimic.backbones.weights_max_frames``; random test weights: their preset's), else its
        native clip (zeroscope 24, ModelScope 16, mini 8). Longer runs are sampled in windows."""
        from cammimic.backbones import weights_max_frames

        return weights_max_frames(self.default_weights) or int(self.default_num_frames)

    def load(
        self,
        weights: str | os.PathLike | None = None,
        *,
        torch_dtype: Any = None,
        variant: str | None = None,
        revision: str | None = None,
        local_files_only: bool | None = None,
        device: Any = None,
        vae_batch_size: int | None = None,
        attention: str | None = None,
    ) -> UNet3DBackbone:
        """Load the UNet3D, VAE, text encoder, tokenizer and scheduler config.

        Args:
            weights: a Hub id or a local diffusers-layout directory (``unet/ vae/ text_encoder/
                tokenizer/ scheduler/``); ``None`` loads :attr:`default_weights`.
            torch_dtype: ``"float32"``, ``"float16"``, ``"bfloat16"`` (or a torch dtype);
                ``None`` uses the adapter's setting, then bfloat16 on CUDA (float16 on GPUs
                without bfloat16) / float32 on CPU. The VAE stays in float32: the zeroscope VAE
                overflows in float16 (NaN frames); it is small, so this costs little.
            variant, revision: as in diffusers' ``from_pretrained`` (Hub ids only).
            local_files_only: never touch the network; ``None`` follows ``HF_HUB_OFFLINE``.
            device: ``"cpu"``, ``"cuda[:n]"``; ``None`` = CUDA when available.
            vae_batch_size: frames per VAE encode/decode call (memory vs speed).
            attention: ``"sdpa"`` sets diffusers' ``AttnProcessor2_0`` on the UNet and VAE;
                ``"default"`` keeps what diffusers chose.

        Raises:
            CammimicError: one line naming the missing directory, subfolder or Hub id, the
                Hugging Face cache that was searched, and ``--weights`` as the way out.
        """
        weights = self.default_weights if weights is None else weights
        device = resolve_device(device)
        dtype = resolve_dtype(torch_dtype if torch_dtype is not None else self.torch_dtype, device)
        attention = attention if attention is not None else self.attention
        if attention not in ATTENTION_CHOICES:
            raise CammimicError(f"attention '{attention}' is unknown. Try one of {list(ATTENTION_CHOICES)}")
        vae_batch_size = int(vae_batch_size if vae_batch_size is not None else self.vae_batch_size)
        if vae_batch_size < 1:
            raise CammimicError(f"vae_batch_size must be at least 1, got {vae_batch_size}")
        source, local = resolve_weights(weights, SUBFOLDERS, self.name)
        options: dict[str, Any] = {}
        unreachable = None
        if not local:
            offline = hub_offline() if local_files_only is None else bool(local_files_only)
            if not offline:
                # No network: use the cache alone instead of ~30 s of download retries.
                unreachable = hub_unreachable()
                offline = unreachable is not None
            options = {"local_files_only": offline, "cache_dir": hub_cache_dir()}
            revision = revision if revision is not None else self.revision
            if revision:
                options["revision"] = revision
        variant = variant if variant is not None else self.variant
        model_options = {**options, **({"variant": variant} if variant else {})}
        with _translate_errors(self, source, local, options, unreachable), warnings.catch_warnings():
            if options.get("local_files_only"):
                require_cached(source, options)  # before diffusers' heavy imports
            # diffusers passes huggingface_hub an argument it deprecated; not the user's concern.
            warnings.filterwarnings("ignore", message=".*local_dir_use_symlinks.*")
            with _quiet_libraries():
                components = _load_components(source, dtype, options, model_options)
        unet, vae, text_encoder, tokenizer, scheduler_config = components
        _check_scheduler_config(scheduler_config, source)
        for model in (unet, vae, text_encoder):
            model.to(device).eval().requires_grad_(False)
        if attention == "sdpa":
            from diffusers.models.attention_processor import AttnProcessor2_0

            unet.set_attn_processor(AttnProcessor2_0())
            vae.set_attn_processor(AttnProcessor2_0())
        return UNet3DBackbone(
            name=self.name,
            weights=source,
            device=device,
            dtype=dtype,
            unet=unet,
            vae=vae,
            text_encoder=text_encoder,
            tokenizer=tokenizer,
            scheduler_config=scheduler_config,
            vae_scale_factor=2 ** (len(vae.config.block_out_channels) - 1),
            latent_channels=int(vae.config.latent_channels),
            vae_batch_size=vae_batch_size,
        )

def resolve_weights(weights: str | os.PathLike, subfolders, name: str, example: str = "") -> tuple[str, bool]:
    """``(source, is_local_directory)`` for ``--weights``: a diffusers-layout directory with
    ``subfolders`` (missing or incomplete ones fail here, in one line) or a Hub id. ``example`` is
    a command that writes such a directory, named when subfolders are missing."""
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
    if _looks_local(text):
        raise CammimicError(f"weights directory {path} does not exist; pass {layout}, or a Hub id (owner/name)")
    return text, False


def require_cached(source: str, options: dict) -> None:
    """Fail at once (OSError) when a Hub id's scheduler config is not in the cache."""
    from huggingface_hub import try_to_load_from_cache

    found = try_to_load_from_cache(source, "scheduler/scheduler_config.json", cache_dir=options.get("cache_dir"),
                                   revision=options.get("revision"))
    if not isinstance(found, str):
        raise OSError(f"{source} is not in the cache")


def load_text_encoder(cls, source: str, dtype: torch.dtype, model_options: dict):
    """``cls.from_pretrained(source, subfolder="text_encoder")`` in ``dtype``, without the
    "Loading weights" bar transformers draws for every load, even from a local folder (the run has
    its own progress bars; downloads keep huggingface_hub's)."""
    import transformers

    dtype_key = "dtype" if int(transformers.__version__.split(".")[0]) >= 5 else "torch_dtype"
    bars = transformers.utils.logging.is_progress_bar_enabled()
    transformers.utils.logging.disable_progress_bar()
    try:
        return cls.from_pretrained(source, subfolder="text_encoder", **{dtype_key: dtype}, **model_options)
    finally:
        if bars:
            transformers.utils.logging.enable_progress_bar()


def _load_components(source: str, dtype: torch.dtype, options: dict, model_options: dict):
    """Scheduler config and tokenizer first: they are small, so a missing model fails fast."""
    from diffusers import AutoencoderKL, DDIMScheduler, UNet3DConditionModel
    from transformers import CLIPTextModel, CLIPTokenizer

    scheduler_config = dict(DDIMScheduler.load_config(source, subfolder="scheduler", **options))
    tokenizer = CLIPTokenizer.from_pretrained(source, subfolder="tokenizer", **options)
    text_encoder = load_text_encoder(CLIPTextModel, source, dtype, model_options)
    # A tokenizer saved without model_max_length reports a huge sentinel (1e30): use the
    # text encoder's context length instead (77 for CLIP).
    context = int(text_encoder.config.max_position_embeddings)
    if not tokenizer.model_max_length or tokenizer.model_max_length > context:
        tokenizer.model_max_length = context
    vae_dtype = torch.float32  # small; the zeroscope VAE overflows in float16 (NaN frames)
    vae = AutoencoderKL.from_pretrained(source, subfolder="vae", torch_dtype=vae_dtype, **model_options)
    unet = UNet3DConditionModel.from_pretrained(source, subfolder="unet", torch_dtype=dtype, **model_options)
    return unet, vae, text_encoder, tokenizer, scheduler_config


@contextlib.contextmanager
def _quiet_libraries():
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


def _check_scheduler_config(config: dict, source: str) -> None:
    """Build every scheduler once now, so bogus values fail at load in one line, not mid-run."""
    from diffusers import DDIMScheduler, DDPMScheduler, DPMSolverMultistepScheduler

    where = f"the scheduler config of {source} (scheduler/scheduler_config.json)"

    def bad(why: str) -> CammimicError:
        return CammimicError(f"{where} is invalid: {why}; fix the file or use other --weights")

    steps = config.get("num_train_timesteps", 1000)
    if not isinstance(steps, int) or isinstance(steps, bool) or not 2 <= steps <= 100_000:
        raise bad(f"num_train_timesteps {str(steps)[:40]!r} is not an integer in 2..100000")
    for key in ("beta_start", "beta_end"):
        value = config.get(key, 1e-3)
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and 0 < value < 1
        if not ok:
            raise bad(f"{key} {str(value)[:40]!r} is not a number in (0, 1)")
    kind = config.get("prediction_type", "epsilon")
    if kind not in ("epsilon", "v_prediction", "sample"):
        raise bad(f"prediction_type {str(kind)[:40]!r} is not one of ['epsilon', 'v_prediction', 'sample']")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            DDPMScheduler.from_config(config)
            DDIMScheduler.from_config(config).set_timesteps(2)
            DPMSolverMultistepScheduler.from_config(config, algorithm_type="dpmsolver++").set_timesteps(2)
    except Exception as exc:  # noqa: BLE001 - diffusers raises many kinds for bad values
        raise bad(_first_line(exc)[:200]) from exc


def _unsafe_pickle(exc: BaseException) -> bool:
    """Whether a load failed because a .bin pickle holds more than tensors (weights_only refused it)."""
    import pickle

    seen = 0
    while exc is not None and seen < 10:
        if isinstance(exc, pickle.UnpicklingError) or "weights_only" in str(exc):
            return True
        exc, seen = exc.__cause__ or exc.__context__, seen + 1
    return False


@contextlib.contextmanager
def _translate_errors(adapter: UNet3DAdapter, source: str, local: bool, options: dict, unreachable: str | None = None):
    """Turn the many ways a download or a read fails into one line with the way out."""
    try:
        yield
    except CammimicError:
        raise
    except _hub_errors() as exc:
        layout = f"a diffusers-layout directory with {'/ '.join(SUBFOLDERS)}/"
        if _unsafe_pickle(exc):
            raise CammimicError(
                f"could not load {adapter.name} weights from {source}: a .bin (pickle) weights file holds "
                "more than tensors, so it was refused (loading it could run code); use .safetensors "
                "weights, or convert trusted ones with diffusers' save_pretrained"
            ) from exc
        if local:
            raise CammimicError(
                f"could not load {adapter.name} weights from {source}: {_first_line(exc)}; "
                f"--weights needs {layout}"
            ) from exc
        where = f"--weights /path/to/{source.rsplit('/', 1)[-1]}"
        cache = options.get("cache_dir") or hub_cache_dir()
        if unreachable:
            reason = f"are not in the Hugging Face cache ({cache}) and {unreachable}"
            fix = f"download them once online (hf download {source})"
        elif options.get("local_files_only"):
            reason = (f"are not in the Hugging Face cache ({cache}) and downloads are off "
                      "(HF_HUB_OFFLINE or local_files_only)")
            fix = f"download them once online (hf download {source})"
        else:
            reason = f"could not be loaded from the Hub or the Hugging Face cache ({cache}): {_first_line(exc)}"
            fix = "check the id, your connection and the revision"
        raise CammimicError(
            f'{adapter.name} weights "{source}" {reason}; {fix}, or pass a local folder with {where} ({layout})'
        ) from exc


# --- the loaded backbone --------------------------------------------------------------------


def _temporal_modules(unet: torch.nn.Module) -> list[torch.nn.Module]:
    from diffusers.models.resnet import TemporalConvLayer
    from diffusers.models.transformers.transformer_temporal import TransformerTemporalModel

    return [m for m in unet.modules() if isinstance(m, (TransformerTemporalModel, TemporalConvLayer))]


def _identity_forward(module: torch.nn.Module):
    """A ``forward`` that returns its input in the type the module's callers expect."""
    from diffusers.models.transformers.transformer_temporal import (
        TransformerTemporalModel,
        TransformerTemporalModelOutput,
    )

    if isinstance(module, TransformerTemporalModel):
        # forward(hidden_states, encoder_hidden_states, timestep, class_labels, num_frames,
        #         cross_attention_kwargs, return_dict=True)
        def forward(hidden_states, *args, **kwargs):
            return_dict = kwargs.get("return_dict", args[5] if len(args) > 5 else True)
            return TransformerTemporalModelOutput(sample=hidden_states) if return_dict else (hidden_states,)

        return forward

    def forward(hidden_states, *args, **kwargs):  # TemporalConvLayer: a residual Conv3d stack
        return hidden_states

    return forward


def _lora_scales(module: torch.nn.Module) -> list[tuple[Any, str, float]]:
    """``(layer, adapter, scaling)`` of every peft LoRA layer in ``module``, as they are now."""
    from peft.tuners.lora import LoraLayer

    return [(m, a, v) for m in module.modules() if isinstance(m, LoraLayer) for a, v in m.scaling.items()]


@contextlib.contextmanager
def _restored_lora_scales(scales: list[tuple[Any, str, float]]):
    """Run with the LoRA scales of ``scales``, then put back the ones in force before."""
    now = [(m, a, m.scaling[a]) for m, a, _ in scales]
    for m, a, v in scales:
        m.scaling[a] = v
    try:
        yield
    finally:
        for m, a, v in now:
            m.scaling[a] = v


@attrs.define(eq=False)
class UNet3DBackbone:
    """A loaded UNet3D text-to-video model; implements :class:`cammimic.components.Backbone`.

    The models are frozen (``eval()``, no grad); LoRAs are injected by the caller into
    :attr:`unet`. Video latents are ``(B, C, T, h, w)`` times the VAE's scaling factor.
    """

    name: str
    weights: str
    device: torch.device
    dtype: torch.dtype
    unet: Any
    vae: Any
    text_encoder: Any
    tokenizer: Any
    scheduler_config: dict[str, Any]
    vae_scale_factor: int = 8
    latent_channels: int = 4
    vae_batch_size: int = 8
    _bypassed: bool = attrs.field(default=False, init=False)
    _saved_forwards: dict = attrs.field(factory=dict, init=False, repr=False)
    _checkpointed: dict = attrs.field(factory=dict, init=False, repr=False)
    samplers: ClassVar[tuple[str, ...]] = SAMPLERS  #: what :meth:`sampling_scheduler` takes; ddim is the default

    @property
    def denoiser(self):
        """The UNet3D (the protocol's name for :attr:`unet`)."""
        return self.unet

    # -- identity ------------------------------------------------------------------------
    def fingerprint(self) -> str:
        """The architecture hash LoRA files are checked against (:func:`cammimic.lora.unet_fingerprint`)."""
        from cammimic.lora import unet_fingerprint

        return unet_fingerprint(self.unet)

    # -- text and pixels -----------------------------------------------------------------
    @torch.no_grad()
    def encode_prompt(self, prompts: list[str]) -> torch.Tensor:
        """Text embeddings ``(B, L, D)`` in the UNet's dtype; ``""`` is the unconditional prompt."""
        if isinstance(prompts, str):
            prompts = [prompts]
        tokens = self.tokenizer(
            list(prompts),
            padding="max_length",
            max_length=self.tokenizer.model_max_length,
            truncation=True,
            return_tensors="pt",
        )
        embeds = self.text_encoder(tokens.input_ids.to(self.device))[0]
        return embeds.to(self.dtype)

    @torch.no_grad()
    def encode_video(self, frames: np.ndarray) -> torch.Tensor:
        """Latents ``(1, C, T, h, w)`` (posterior mean x scaling factor) of uint8 frames ``(T, H, W, 3)``.

        Frames go through the VAE ``vae_batch_size`` at a time.
        """
        frames = np.asarray(frames)
        if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
            raise CammimicError(
                f"encode_video needs uint8 frames (T, H, W, 3), got {frames.dtype} {tuple(frames.shape)}"
            )
        t, h, w, _ = frames.shape
        f = self.vae_scale_factor
        if h % f or w % f:
            raise CammimicError(f"frame size {w}x{h} must be a multiple of {f} (the VAE's scale factor)")
        pixels = rearrange(torch.from_numpy(np.ascontiguousarray(frames)), "t h w c -> t c h w")
        latents = []
        for start in range(0, t, self.vae_batch_size):
            chunk = pixels[start:start + self.vae_batch_size].to(self.device, self.vae.dtype) / 127.5 - 1.0
            latents.append(self.vae.encode(chunk).latent_dist.mean)
        z = torch.cat(latents) * self.vae.config.scaling_factor  # (T, C, h, w)
        # float32, not the UNet's dtype: cached training latents are not rounded to half precision
        return rearrange(z, "t c h w -> 1 c t h w").float()

    @torch.no_grad()
    def decode_latents(self, latents: torch.Tensor) -> np.ndarray:
        """uint8 frames ``(T, H, W, 3)`` of latents ``(1, C, T, h, w)``, decoded in slices."""
        if latents.ndim != 5 or latents.shape[0] != 1:
            raise CammimicError(f"decode_latents needs latents (1, C, T, h, w), got {tuple(latents.shape)}")
        z = rearrange(latents, "1 c t h w -> t c h w") / self.vae.config.scaling_factor
        frames = []
        for start in range(0, z.shape[0], self.vae_batch_size):
            chunk = z[start:start + self.vae_batch_size].to(self.device, self.vae.dtype)
            x = self.vae.decode(chunk).sample.float()
            if not torch.isfinite(x).all():  # a float16 VAE that overflowed: never a black video written as success
                raise CammimicError(
                    f"the VAE decoded non-finite values in frames {start}..{start + len(chunk) - 1} "
                    f"({self.vae.dtype}); decode in float32 (--dtype float32) or lower the guidance")
            x = x.clamp(-1.0, 1.0)
            frames.append(rearrange(((x + 1.0) * 127.5).round().to(torch.uint8), "t c h w -> t h w c").cpu())
        return torch.cat(frames).numpy()

    # -- denoising -----------------------------------------------------------------------
    def predict_noise(self, latents: torch.Tensor, timestep: Any, prompt_embeds: torch.Tensor) -> torch.Tensor:
        """The UNet's noise prediction ``(B, C, T, h, w)``; one prompt embedding serves a batch."""
        if prompt_embeds.shape[0] == 1 and latents.shape[0] > 1:
            prompt_embeds = prompt_embeds.expand(latents.shape[0], *prompt_embeds.shape[1:])
        return self.unet(
            latents.to(self.dtype), timestep, encoder_hidden_states=prompt_embeds.to(self.dtype)
        ).sample

    def temporal_bypass(self) -> contextlib.AbstractContextManager:
        """Context manager: every temporal module of the UNet is an identity inside it.

        ``transformer_in``, ``temp_attentions.*`` (``TransformerTemporalModel``) and
        ``temp_convs.*`` (``TemporalConvLayer``) return their input, unrun: their weights
        (and temporal LoRAs) get no gradient from what is computed inside. Their ``forward``
        is swapped on the instances and restored on exit, even after an exception.
        """
        return self._temporal_state(True)

    @contextlib.contextmanager
    def _temporal_state(self, bypassed: bool):
        """Run with the temporal modules bypassed or not, then restore the previous state."""
        if bypassed == self._bypassed:
            yield
            return
        self._swap_temporal(bypassed)
        try:
            yield
        finally:
            self._swap_temporal(not bypassed)

    def _swap_temporal(self, bypassed: bool) -> None:
        if bypassed:
            for module in _temporal_modules(self.unet):
                self._saved_forwards[module] = module.__dict__.get("forward", _MISSING)
                module.forward = _identity_forward(module)
        else:
            for module, forward in self._saved_forwards.items():
                if forward is _MISSING:
                    del module.forward
                else:
                    module.forward = forward
            self._saved_forwards.clear()
        self._bypassed = bypassed

    def set_gradient_checkpointing(self, enabled: bool) -> None:
        """Recompute each down/mid/up block's activations in the backward pass.

        Active only while gradients are enabled (training); inference is unchanged. A block
        that ran inside :meth:`temporal_bypass` is recomputed bypassed too, and with the LoRA
        scales it ran with (e.g. the spatial LoRA masked off), even if the backward pass runs
        after the ``with`` block that set them has ended.
        """
        mid = [self.unet.mid_block] if self.unet.mid_block is not None else []
        blocks = [*self.unet.down_blocks, *mid, *self.unet.up_blocks]
        if enabled:
            for block in blocks:
                if block not in self._checkpointed:
                    self._checkpointed[block] = block.__dict__.get("forward", _MISSING)
                    block.forward = self._checkpointed_forward(block, block.forward)
        else:
            for block, forward in self._checkpointed.items():
                if forward is _MISSING:
                    del block.forward
                else:
                    block.forward = forward
            self._checkpointed.clear()

    def _checkpointed_forward(self, block, forward):
        from torch.utils.checkpoint import checkpoint

        def wrapped(*args, **kwargs):
            if not torch.is_grad_enabled():
                return forward(*args, **kwargs)
            bypassed = self._bypassed
            scales = _lora_scales(block)  # e.g. the spatial LoRA switched off for a masked step

            def run(*a, **k):  # the recomputation must see the same temporal state and LoRA scales
                with self._temporal_state(bypassed), _restored_lora_scales(scales):
                    return forward(*a, **k)

            return checkpoint(run, *args, use_reentrant=False, **kwargs)

        return wrapped

    # -- schedulers ----------------------------------------------------------------------
    def training_scheduler(self):
        """A DDPM scheduler with the model's noise schedule (``add_noise``, 1000 timesteps)."""
        from diffusers import DDPMScheduler

        return DDPMScheduler.from_config(self.scheduler_config)

    def sampling_scheduler(self, kind: str = "ddim"):
        """A fresh sampling scheduler: ``"ddim"`` or ``"dpm"`` (multistep DPM-Solver++)."""
        from diffusers import DDIMScheduler, DPMSolverMultistepScheduler

        if kind == "ddim":
            return DDIMScheduler.from_config(self.scheduler_config)
        if kind == "dpm":
            return DPMSolverMultistepScheduler.from_config(self.scheduler_config, algorithm_type="dpmsolver++")
        raise CammimicError(f"sampler '{kind}' is unknown. Try one of {list(SAMPLERS)}")
