"""Expand a sweep into groups of runs that train together, run them, and collect results.

Runs that share ``(manifold, batch size, concepts)`` have parameters of the same shape, so they
form one [ToyModel][manifold_align.simulate.toy.ToyModel] with a leading run dimension: noise
levels, temperature modes and replicates of a group all advance in the same optimizer step,
with one batched similarity and one loss call per step.

Per step and run: sample ``B`` pairs ([sample_pairs][manifold_align.simulate.sampling.sample_pairs]),
logits ``(R, B, B)``, the sweep's loss (``loss: infonce``: symmetric InfoNCE,
``info_nce_from_logits``; ``loss: sigmoid``: SigLIP's ``sigmoid_from_logits`` with each run's
bias), Riemannian Adam on the embeddings and Adam on the log-scales (and the biases), then the
clamp of learnable scales.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import time
from collections.abc import Callable

import numpy as np
import torch

from manifold_align.losses import info_nce_from_logits, sigmoid_from_logits
from manifold_align.optim import RiemannianAdam
from manifold_align.simulate import sigmoid_theory, theory, topology
from manifold_align.simulate.config import SweepConfig, TemperatureSpec, parse_manifold
from manifold_align.simulate.sampling import sample_pairs
from manifold_align.simulate.toy import ToyModel

__all__ = [
    "TRAJECTORY_KEYS",
    "GroupOutput",
    "RunGroup",
    "RunSpec",
    "SweepResult",
    "expand",
    "run_group",
    "run_sweep",
    "settle_step",
]

#: Quantities recorded along each run, every ``log_every`` steps (and at the last step).
TRAJECTORY_KEYS = (
    "loss", "scale", "pos_sim", "neg_sim", "sim_gap", "gap", "alignment", "uniformity", "accuracy", "bias"
)


@dataclasses.dataclass(frozen=True)
class RunSpec:
    """One run of a sweep: its index in the sweep and its settings."""

    index: int
    manifold: str
    noise: float
    temperature: TemperatureSpec
    batch_size: int
    concepts: int
    replicate: int


@dataclasses.dataclass(frozen=True)
class RunGroup:
    """Runs sharing ``(manifold, batch_size, concepts)``, trained as one batched model."""

    manifold: str
    batch_size: int
    concepts: int
    runs: tuple[RunSpec, ...]


def expand(cfg: SweepConfig) -> list[RunGroup]:
    """The sweep's runs (``noise x manifolds x temperatures x batch_sizes x concepts x
    replicates``), numbered in that order and grouped by ``(manifold, batch_size, concepts)``.
    """
    groups: dict[tuple[str, int, int], list[RunSpec]] = {}
    combos = itertools.product(
        cfg.manifolds, cfg.batch_sizes, cfg.concepts, cfg.noise, cfg.temperatures, range(cfg.replicates)
    )
    for index, (m, b, c, p, temp, rep) in enumerate(combos):
        groups.setdefault((m, b, c), []).append(RunSpec(index, m, float(p), temp, b, c, rep))
    return [RunGroup(m, b, c, tuple(runs)) for (m, b, c), runs in groups.items()]


def settle_step(
    values: np.ndarray, steps: np.ndarray, rel_tol: float, abs_tol: float
) -> np.ndarray:
    """First logged step after which each trajectory stays within tolerance of its final value.

    Math: ``min{steps[i] : |v[j] - v[-1]| <= rel_tol |v[-1]| + abs_tol for all j >= i}``.

    Args:
        values: ``(T, R)`` trajectories (``T`` logged points, ``R`` runs).
        steps: ``(T,)`` the step of each logged point.

    Returns:
        ``(R,)`` int64 steps.

    Raises:
        ValueError: shapes that disagree.
    """
    values = np.asarray(values, dtype=np.float64)
    if values.ndim != 2 or values.shape[0] != len(steps):
        raise ValueError(f"values: expected shape ({len(steps)}, R), got {values.shape}")
    final = values[-1]
    within = np.abs(values - final) <= rel_tol * np.abs(final) + abs_tol
    # within[i:] all true <=> reversed cumulative AND is true at i.
    suffix_ok = np.flip(np.logical_and.accumulate(np.flip(within, 0), axis=0), 0)
    first = np.argmax(suffix_ok, axis=0)  # suffix_ok[-1] is always true
    return np.asarray(steps)[first].astype(np.int64)


def _lr_factor(schedule: str, step: int, steps: int) -> float:
    if schedule == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * step / steps))
    return 1.0


@dataclasses.dataclass
class GroupOutput:
    """What one group's training produced: logged steps ``(T,)``, trajectories ``name ->
    (T, R)``, per-step batch losses ``(steps, R)`` and the wall time in seconds."""

    group: RunGroup
    steps: np.ndarray
    trajectories: dict[str, np.ndarray]
    batch_loss: np.ndarray
    seconds: float


def run_group(group: RunGroup, cfg: SweepConfig, seed: int) -> GroupOutput:
    """Train every run of ``group`` for ``cfg.steps`` steps, batched; see the module docstring."""
    gen = torch.Generator().manual_seed(seed)
    manifold = parse_manifold(group.manifold)
    temps = [r.temperature for r in group.runs]
    model = ToyModel(
        manifold,
        len(group.runs),
        group.concepts,
        initial_scale=[t.initial_scale for t in temps],
        max_scale=[t.max_scale for t in temps],
        learnable=[t.mode == "learnable" for t in temps],
        generator=gen,
        initial_bias=cfg.bias.initial_bias(group.batch_size),
    )
    noise = torch.tensor([r.noise for r in group.runs], dtype=torch.float32)
    trains_bias = cfg.loss == "sigmoid" and cfg.bias.learnable
    optimizers = (
        RiemannianAdam(
            [{"params": [model.image, model.text], "manifold": manifold}],
            lr=cfg.optim.lr,
            betas=cfg.optim.betas,
        ),
        torch.optim.Adam(
            [model.log_scale, model.bias] if trains_bias else [model.log_scale], lr=cfg.optim.lr, betas=cfg.optim.betas
        ),
    )
    # Log points count completed updates: 0, log_every, 2 log_every, ..., steps.
    log_steps = sorted(set(range(0, cfg.steps, cfg.log_every)) | {cfg.steps})
    logged: dict[str, list[torch.Tensor]] = {k: [] for k in TRAJECTORY_KEYS}
    batch_loss = torch.empty(cfg.steps, len(group.runs))
    start = time.perf_counter()

    def record(done: int, previous: int) -> None:
        diag = model.diagnostics()
        # The loss at a log point: mean batch loss of the steps since the previous one.
        logged["loss"].append(
            batch_loss[previous:done].mean(0) if done > previous else torch.full_like(noise, math.nan)
        )
        for key in TRAJECTORY_KEYS[1:]:
            logged[key].append(diag[key])

    record(0, 0)
    log_set, previous = set(log_steps), 0
    for step in range(cfg.steps):
        lr = cfg.optim.lr * _lr_factor(cfg.optim.schedule, step, cfg.steps)
        for opt in optimizers:
            for g in opt.param_groups:
                g["lr"] = lr
            opt.zero_grad(set_to_none=True)
        images, captions = sample_pairs(noise, group.batch_size, group.concepts, gen)
        loss = _batch_loss(cfg, model, images, captions)
        loss.sum().backward()
        for opt in optimizers:
            opt.step()
        model.clamp_()
        batch_loss[step] = loss.detach()
        if step + 1 in log_set:
            record(step + 1, previous)
            previous = step + 1
    seconds = time.perf_counter() - start
    return GroupOutput(
        group=group,
        steps=np.asarray(log_steps, dtype=np.int64),
        trajectories={k: torch.stack(v).numpy() for k, v in logged.items()},
        batch_loss=batch_loss.numpy(),
        seconds=seconds,
    )


def _batch_loss(cfg: SweepConfig, model: ToyModel, images: torch.Tensor, captions: torch.Tensor) -> torch.Tensor:
    """``(R,)`` per-run losses of one batch under ``cfg.loss``."""
    logits = model.logits(images, captions)
    if cfg.loss == "sigmoid":
        bias = model.bias if cfg.bias.learnable else model.bias.detach()
        return sigmoid_from_logits(logits, bias[:, None, None])
    return info_nce_from_logits(logits)


@dataclasses.dataclass
class SweepResult:
    """A finished sweep.

    Attributes:
        records: one dict per run (settings, final measurements, theory, settle steps), in
            run-index order; the keys are documented in [run_sweep][manifold_align.simulate.sweep.run_sweep].
        steps: ``(T,)`` logged steps (shared by all runs).
        trajectories: ``name -> (n_runs, T)`` arrays, rows in run-index order.
        seconds: wall time of the whole sweep (training only).
        group_seconds: wall time per group, keyed ``manifold|B|C``.
        threads: torch CPU threads the sweep ran with.
    """

    records: list[dict]
    steps: np.ndarray
    trajectories: dict[str, np.ndarray]
    seconds: float
    group_seconds: dict[str, float]
    threads: int


def _record(run: RunSpec, cfg: SweepConfig, out: GroupOutput, col: int) -> dict:
    traj = {k: v[:, col] for k, v in out.trajectories.items()}
    manifold = parse_manifold(run.manifold)
    components = manifold.similarity_range[1]
    ceiling = topology.topology_max_gap(manifold, run.concepts)
    eq = theory.equilibrium_within(
        run.noise, run.batch_size, run.concepts, ceiling, max_scale=run.temperature.max_scale
    )
    sig = _sigmoid_record(run, traj, components) if cfg.loss == "sigmoid" else None
    tol = cfg.settle
    scale_settle = settle_step(traj["scale"][:, None], out.steps, tol.rel_tol, tol.abs_tol)[0]
    emb_settle = settle_step(traj["sim_gap"][:, None], out.steps, tol.rel_tol, tol.abs_tol)[0]
    window = min(cfg.final_window, cfg.steps)
    measured = float(traj["gap"][-1])
    radius = topology.min_lorentz_radius(manifold, eq.gap, run.concepts)

    def finite_or_none(x: float) -> float | None:
        return float(x) if math.isfinite(x) else None

    return {
        "run": run.index,
        "manifold": run.manifold,
        "components": float(components),
        "topology": topology.topology_kind(manifold),
        "ceiling": finite_or_none(ceiling),
        "needs_temperature": bool(eq.gap > ceiling),
        "min_lorentz_radius": None if radius is None else finite_or_none(radius),
        "noise": run.noise,
        "temperature": run.temperature.mode,
        "temperature_label": run.temperature.label,
        "max_scale": run.temperature.max_scale,
        "batch_size": run.batch_size,
        "concepts": run.concepts,
        "replicate": run.replicate,
        "steps": cfg.steps,
        "final_loss": float(out.batch_loss[-window:, col].mean()),
        "scale": float(traj["scale"][-1]),
        "pos_sim": float(traj["pos_sim"][-1]),
        "neg_sim": float(traj["neg_sim"][-1]),
        "measured_gap": measured,
        "predicted_gap": finite_or_none(eq.gap),
        "max_gap": finite_or_none(eq.max_gap),
        "reachable_gap": finite_or_none(eq.reachable_gap),
        "gap_ratio": measured / eq.reachable_gap if eq.reachable_gap > 0 else None,
        "predicted_loss": finite_or_none(sig["predicted_loss"] if sig else eq.reachable_loss),
        "min_sphere_scale": finite_or_none(eq.sphere_scale),
        "min_oblique_tokens": finite_or_none(eq.oblique_tokens),
        "alignment": float(traj["alignment"][-1]),
        "uniformity": float(traj["uniformity"][-1]),
        "scale_settle_step": int(scale_settle),
        "embedding_settle_step": int(emb_settle),
        "accuracy": float(traj["accuracy"][-1]),
        "loss": cfg.loss,
        **(sig or dict.fromkeys(_SIGMOID_KEYS)),
    }


#: The sigmoid loss's record keys (``None`` in an InfoNCE run's record).
_SIGMOID_KEYS = (
    "bias", "pos_logit", "neg_logit", "predicted_pos_logit", "predicted_neg_logit", "predicted_bias",
)


def _sigmoid_record(run: RunSpec, traj: dict[str, np.ndarray], components: float) -> dict:
    """The sigmoid loss's measurements and theory for one run (keys ``_SIGMOID_KEYS`` and
    ``predicted_loss``): logits $v = t s_+ + b$, $u = t s_- + b$ against $u_g + g$, $u_g$ at the
    reachable gap, and the bias $u_g - t s_-$ that the run's own scale and $s_-$ call for."""
    eq = sigmoid_theory.sigmoid_equilibrium(
        run.noise, run.batch_size, run.concepts, components=components, max_scale=run.temperature.max_scale
    )
    scale, bias = float(traj["scale"][-1]), float(traj["bias"][-1])
    pos, neg = float(traj["pos_sim"][-1]), float(traj["neg_sim"][-1])
    u = eq.reachable_negative_logit
    finite = math.isfinite(u)
    return {
        "bias": bias,
        "pos_logit": scale * pos + bias,
        "neg_logit": scale * neg + bias,
        "predicted_pos_logit": u + eq.reachable_gap if finite else None,
        "predicted_neg_logit": u if finite else None,
        "predicted_bias": sigmoid_theory.bias_for(u, scale, neg) if finite else None,
        "predicted_loss": eq.reachable_loss,
    }


def run_sweep(cfg: SweepConfig, progress: Callable[[str], None] | None = None) -> SweepResult:
    """Run every group of ``cfg`` and gather one record per run.

    Record keys: the settings (``run, manifold, components, noise, temperature,
    temperature_label, max_scale, batch_size, concepts, replicate, steps``); what the topology
    can reach (``topology``: its kind, ``ceiling`` $G_1$: the largest gap at scale 1,
    ``needs_temperature``: $g^\\star > G_1$, ``min_lorentz_radius``: the radius its one
    `Lorentz` factor needs for $g^\\star$ at scale 1, else ``None``); the measurements
    at the last step (``scale, pos_sim, neg_sim, measured_gap = scale * (pos_sim - neg_sim),
    alignment, uniformity``) and ``final_loss`` (mean batch loss over the last
    ``final_window`` steps); the theory (``predicted_gap`` $g^\\star$, ``max_gap``,
    ``reachable_gap`` $\\min(g^\\star, G_{\\max})$, ``gap_ratio`` = measured / reachable,
    ``predicted_loss`` at the reachable gap, ``min_sphere_scale``, ``min_oblique_tokens``;
    ``None`` where infinite); ``scale_settle_step``, ``embedding_settle_step`` (the
    latter on $s_+ - s_-$); ``accuracy`` (share of concepts whose own caption is the image's
    strict top match, `ToyModel.diagnostics`) and ``loss`` (``cfg.loss``). With the
    sigmoid loss also ``bias``, ``pos_logit`` $= t s_+ + b$, ``neg_logit`` $= t s_- + b$ and
    their theory ``predicted_pos_logit``, ``predicted_neg_logit``, ``predicted_bias``
    (`sigmoid_theory` at the reachable gap; ``predicted_loss`` is
    then the sigmoid loss's); these are ``None`` for InfoNCE.

    Args:
        cfg: the sweep.
        progress: called with one line per finished group.
    """
    previous_threads = torch.get_num_threads()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    try:
        return _run_groups(cfg, progress)
    finally:
        torch.set_num_threads(previous_threads)


def _run_groups(cfg: SweepConfig, progress: Callable[[str], None] | None) -> SweepResult:
    groups = expand(cfg)
    n_runs = sum(len(g.runs) for g in groups)
    records: list[dict | None] = [None] * n_runs
    trajectories: dict[str, np.ndarray] = {}
    group_seconds: dict[str, float] = {}
    steps = np.zeros(0, dtype=np.int64)
    start = time.perf_counter()
    for gi, group in enumerate(groups):
        out = run_group(group, cfg, seed=cfg.seed * 1_000_003 + gi)
        steps = out.steps
        key = f"{group.manifold}|{group.batch_size}|{group.concepts}"
        group_seconds[key] = out.seconds
        for col, run in enumerate(group.runs):
            records[run.index] = _record(run, cfg, out, col)
            for name, arr in out.trajectories.items():
                trajectories.setdefault(name, np.zeros((n_runs, len(out.steps))))[run.index] = arr[:, col]
        if progress is not None:
            progress(f"{key}: {len(group.runs)} runs x {cfg.steps} steps in {out.seconds:.1f} s")
    seconds = time.perf_counter() - start
    return SweepResult(
        [r for r in records if r is not None], steps, trajectories, seconds, group_seconds, torch.get_num_threads()
    )
