"""Hook specifications: the contracts between cammimic and its plugins.

Every hook is documented in ``docs/plugins.md``; a plugin implements one with
``@cammimic.hookimpl`` on a function of the same name and (a subset of) the same arguments.
Component factories are registered, not instances: nothing heavy is built during discovery.
"""

from __future__ import annotations

from pluggy import HookimplMarker, HookspecMarker

hookspec = HookspecMarker("cammimic")
hookimpl = HookimplMarker("cammimic")


@hookspec
def register_backbones(register):
    """Register backbone adapters: text-to-video diffusion models cammimic can finetune and sample.

    Call ``register(name, factory, *, description="", requires=(), extra=None)`` once per
    backbone. ``factory(**params)`` returns a :class:`cammimic.components.BackboneAdapter`;
    ``params`` come from the ``[backbone]`` config section. ``requires`` lists the import names
    the factory needs (checked before it is called) and ``extra`` the cammimic extra that
    installs them, so a user without them is told ``pip install "cammimic[extra]"``.
    """


@hookspec(firstresult=True)
def locate_attention_layers(backbone, model, include_ff):
    """Say which layers of ``model`` get the spatial and which the temporal LoRA.

    ``backbone`` is the backbone's registered name, ``model`` its denoiser (e.g. a diffusers
    ``UNet3DConditionModel``), ``include_ff`` whether feed-forward layers are adapted too.
    Return a :class:`cammimic.components.AttentionLayers` for backbones you know, or ``None`` so
    another plugin can answer. The first non-``None`` answer wins.
    """


@hookspec
def register_motion_estimators(register):
    """Register motion estimators: frames in, frame-to-frame homographies out.

    Call ``register(name, factory, *, description="", requires=(), extra=None)`` once per
    estimator. ``factory(**params)`` returns a :class:`cammimic.motion.MotionEstimator`;
    ``params`` come from the ``[motion_estimator]`` config section.
    """


@hookspec
def register_guidance_terms(register):
    """Register guidance terms that steer sampling (Phase 2), e.g. homography guidance.

    Call ``register(name, factory, *, description="", requires=(), extra=None)`` once per
    term. ``factory(**params)`` returns a :class:`cammimic.components.GuidanceTerm`; each
    ``[[guidance]]`` config entry names one term and its parameters.
    """


@hookspec
def register_noise_initialisers(register):
    """Register noise initialisers: what the initial latents x_T of sampling are drawn as.

    Call ``register(name, factory, *, description="", requires=(), extra=None)`` once per
    initialiser. ``factory(**params)`` returns a :class:`cammimic.noise.NoiseInitialiser`: an
    object with a ``name`` and ``draw(generator, context)`` returning standard normal latents of
    ``context.shape`` (a :class:`cammimic.noise.NoiseContext`, which carries the reference's
    homographies); ``params`` come from the ``[noise]`` config section.
    """


@hookspec
def register_eval_methods(register):
    """Register evaluation methods: what ``cammimic eval`` compares (the paper's baselines, ablations).

    Call ``register(name, factory, *, description="", requires=(), extra=None)`` once per
    method. ``factory()`` returns a :class:`cammimic.eval.EvalMethod`: an object with a ``name``
    and ``run(item, output_dir, *, config, host)`` that writes one run directory (as ``cammimic
    run`` does: at least ``output.mp4``, ``score.json``, ``motion.json``, ``config.toml``,
    ``run.json``) for one manifest item (:class:`cammimic.eval.EvalItem`) under ``config``.
    """


@hookspec
def register_eval_metrics(register):
    """Register evaluation metrics: numbers ``cammimic eval`` computes on each output video.

    Call ``register(name, factory, *, description="", requires=(), extra=None)`` once per
    metric. ``factory(**params)`` returns a :class:`cammimic.eval.EvalMetric`: an object with a
    ``name``, ``columns`` (the result columns it fills, higher-is-better unless listed in
    ``lower_is_better``) and ``compute(sample)`` returning ``{column: float}`` for one
    :class:`cammimic.eval.EvalSample`. ``params`` come from ``--metric-weights`` (``weights``) and
    the factory loads its models, once per worker.
    """
