r"""Riemannian Adam: geoopt's update rule, vectorized, with the manifold carried by the group.

For a parameter $x$ on a manifold $\mathcal{M}$ with Euclidean gradient $g$, step $t$:

$$
\begin{aligned}
r &= \operatorname{egrad2rgrad}_x(\sigma g + \lambda x), \qquad
m \leftarrow \beta_1 m + (1 - \beta_1)\, r, \qquad
v \leftarrow \beta_2 v + (1 - \beta_2)\, \langle r, r\rangle_x^{\text{comp}}\\
u &= -\eta\, \frac{m / (1 - \beta_1^t)}{\sqrt{v / (1 - \beta_2^t)} + \epsilon}, \qquad
(x, m) \leftarrow \operatorname{retr\_transp}_x(u, m)
\end{aligned}
$$

with $\sigma = -1$ under ``maximize`` and $\langle\cdot,\cdot\rangle^{\text{comp}}$ the
manifold's ``component_inner``: one scalar per row of a ``Sphere``, per token of an
``Oblique``, per coordinate of a ``Euclidean`` (there it is exactly `torch.optim.Adam`).
"""

from __future__ import annotations

import contextlib
import math
import warnings
from collections.abc import Iterable, Iterator
from numbers import Real
from typing import Any

import geoopt
import torch
from torch.optim.adam import adam as torch_adam

from manifold_align.manifolds import Euclidean, Oblique, Sphere
from manifold_align.optim import fused_cpu
from manifold_align.optim.rowwise import HALF_DTYPES, RowAdamHyper, row_adam_

__all__ = ["RiemannianAdam"]

_EUCLIDEAN, _ROWS, _GENERIC = "euclidean", "rows", "generic"
# Devices with torch's fused (single-kernel) Adam; used when the user leaves foreach/fused unset.
_FUSED_DEVICES = ("cpu", "cuda", "mps", "xpu")


def _kind(manifold: geoopt.Manifold | None) -> str:
    """Which update serves ``manifold``: elementwise Adam, the fused row kernel, or generic.

    Only exact classes whose operations are known to be the row (or flat) formulas take a
    fast path; any other manifold (subclasses included) goes through its own methods.
    """
    if manifold is None or type(manifold) in (geoopt.Euclidean, Euclidean):
        return _EUCLIDEAN
    if type(manifold) in (Sphere, Oblique):
        return _ROWS
    if type(manifold) is geoopt.Sphere and manifold.projector is None:
        return _ROWS
    return _GENERIC


def _same_manifold(a: geoopt.Manifold, b: geoopt.Manifold) -> bool:
    """Same object, or same class with the same description (e.g. two ``Sphere(dim=64)``)."""
    return a is b or (type(a) is type(b) and repr(a) == repr(b))


def _state_dtype(p: torch.Tensor) -> torch.dtype:
    return torch.float32 if p.dtype in HALF_DTYPES else p.dtype


class RiemannianAdam(torch.optim.Optimizer):
    r"""Riemannian Adam (module docstring for the update), geoopt's rule built for speed.

    Which manifold a parameter lives on, in order: its parameter group's ``manifold``; else
    the ``manifold`` of a `geoopt.ManifoldParameter`/``ManifoldTensor`` *as it was
    when the parameter was added to this optimizer* (a tag that later falls off, e.g. by
    ``load_state_dict(assign=True)`` or swap-on-conversion, does not turn it Euclidean);
    else Euclidean (plain Adam).

    Execution: ``Sphere``/``Oblique``/``geoopt.Sphere()`` parameters go through a one-pass
    row kernel that reads and writes each row once: numba on CPU
    ([row_adam_fused_][manifold_align.optim.fused_cpu.row_adam_fused_]), Triton on CUDA.
    Where numba (CPU) or Triton (CUDA) cannot be imported, one ``RuntimeWarning`` says so
    and the cache-blocked torch kernel
    ([row_adam_][manifold_align.optim.rowwise.row_adam_]) runs instead, with the same
    results to rounding. Euclidean ones through torch's own Adam (fused kernel by default, or
    ``foreach``/single-tensor as requested); any other geoopt manifold through its own
    ``egrad2rgrad``/``component_inner``/``retr_transp``, one parameter at a time.

    State per parameter: ``step`` (int for manifold parameters, a float32 tensor for
    Euclidean ones, as in torch's Adam), ``exp_avg`` (parameter shape), ``exp_avg_sq`` (the
    shape of ``component_inner``: ``(..., 1)`` for ``Sphere``, ``(..., k, 1)`` for
    ``Oblique``, full size for Euclidean) and ``max_exp_avg_sq`` under AMSGrad. Manifold
    parameters in float16/bfloat16 keep float32 state and are updated in float32; Euclidean
    ones follow torch's Adam (state in the parameter's dtype). The step ignores autocast.
    Manifold parameters must start on their manifold (``manifold.projx`` or ``random``), as
    with geoopt; the retraction keeps them there.

    Args:
        params: parameters or dicts (parameter groups); a group may set ``manifold``.
        lr: learning rate $\eta \ge 0$.
        betas: $(\beta_1, \beta_2)$, each in $[0, 1)$.
        eps: $\epsilon \ge 0$.
        weight_decay: L2 penalty $\lambda \ge 0$, added to a copy of the gradient.
        amsgrad: use $\max_{s \le t} v_s$ (per component) in the denominator.
        stabilize: every this many steps, re-project each manifold parameter
            (``projx``) and its ``exp_avg`` (``proju``); ``None`` never.
        maximize: ascend the objective.
        foreach: for Euclidean parameters, torch's multi-tensor Adam (``True``) or its
            per-tensor loop (``False``). Manifold parameters always use the batched kernel.
        fused: for Euclidean parameters, torch's fused Adam kernel. Default (both
            ``None``): fused where torch has it (floating point on cpu/cuda/mps/xpu).
        capturable: not supported (``True`` raises).
        differentiable: not supported (``True`` raises).
        cpu_threads: threads of the CPU row kernel. ``None`` (default): as many as torch's
            current intra-op setting, which is read, never changed. The one-pass kernel
            runs them in a pool of its own, so nothing process-wide changes; the torch
            fallback kernel sets torch's count for its duration and restores it (only when
            ``cpu_threads`` is given). Results are the same for any value.

    Raises:
        ValueError: a hyperparameter or ``cpu_threads`` out of range;
            ``capturable``/``differentiable`` set;
            ``foreach`` and ``fused`` both ``True``; a group ``manifold`` that disagrees
            with a parameter's own tag; a parameter whose trailing shape does not fit its
            manifold's ``point_shape``; a checkpoint whose group manifolds differ.
        TypeError: a group ``manifold`` that is not a ``geoopt.Manifold``; a non-floating
            parameter on a manifold; sparse gradients (at ``step``).
    """

    def __init__(
        self,
        params: Iterable[torch.Tensor] | Iterable[dict[str, Any]],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        amsgrad: bool = False,
        stabilize: int | None = None,
        *,
        maximize: bool = False,
        foreach: bool | None = None,
        fused: bool | None = None,
        capturable: bool = False,
        differentiable: bool = False,
        cpu_threads: int | None = None,
    ) -> None:
        _check_real("lr", lr, low=0.0)
        _check_real("eps", eps, low=0.0)
        _check_real("weight_decay", weight_decay, low=0.0)
        if not (isinstance(betas, tuple | list) and len(betas) == 2):
            raise ValueError(f"betas: expected a pair (beta1, beta2), got {betas!r}")
        for i, b in enumerate(betas):
            _check_real(f"betas[{i}]", b, low=0.0, high=1.0)
        if stabilize is not None and (
            isinstance(stabilize, bool) or not isinstance(stabilize, int) or stabilize < 1
        ):
            raise ValueError(f"stabilize: expected None or an int >= 1, got {stabilize!r}")
        if capturable:
            raise ValueError(
                "capturable=True is not supported: the step computes its bias corrections "
                "on the host, which CUDA graph capture cannot replay"
            )
        if differentiable:
            raise ValueError(
                "differentiable=True is not supported: the step runs under torch.no_grad "
                "and updates parameters in place"
            )
        if foreach and fused:
            raise ValueError("foreach and fused cannot both be True; choose one")
        if cpu_threads is not None and (
            isinstance(cpu_threads, bool) or not isinstance(cpu_threads, int) or cpu_threads < 1
        ):
            raise ValueError(f"cpu_threads: expected None or an int >= 1, got {cpu_threads!r}")
        defaults = {
            "lr": lr,
            "betas": tuple(betas),
            "eps": eps,
            "weight_decay": weight_decay,
            "amsgrad": bool(amsgrad),
            "stabilize": stabilize,
            "maximize": bool(maximize),
            "foreach": foreach,
            "fused": fused,
            "cpu_threads": cpu_threads,
            "manifold": None,
        }
        # The manifold tag each parameter carried when it was added (None: untagged).
        self._tags: dict[torch.Tensor, geoopt.Manifold | None] = {}
        super().__init__(params, defaults)

    # --- groups and manifolds -------------------------------------------------------------

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """Add a group; record each parameter's manifold tag and check it against the group's.

        Raises:
            TypeError: ``manifold`` is not a ``geoopt.Manifold``, or a manifold parameter is
                not floating point.
            ValueError: a parameter's tag disagrees with the group ``manifold``, or its
                trailing shape does not fit the manifold's ``point_shape``.
        """
        super().add_param_group(param_group)
        group = self.param_groups[-1]
        gi = len(self.param_groups) - 1
        manifold = group["manifold"]
        if manifold is not None and not isinstance(manifold, geoopt.Manifold):
            raise TypeError(
                f"param_groups[{gi}]['manifold']: expected a geoopt.Manifold or None, "
                f"got {type(manifold).__name__}"
            )
        for pi, p in enumerate(group["params"]):
            tag = p.manifold if isinstance(p, geoopt.ManifoldParameter | geoopt.ManifoldTensor) else None
            if manifold is not None and tag is not None and not _same_manifold(manifold, tag):
                raise ValueError(
                    f"param_groups[{gi}]['params'][{pi}]: tagged with {tag!r} but the group's "
                    f"manifold is {manifold!r}; drop one or make them agree"
                )
            effective = manifold if manifold is not None else tag
            if effective is not None and _kind(effective) != _EUCLIDEAN:
                _check_fits(effective, p, f"param_groups[{gi}]['params'][{pi}]")
            self._tags[p] = tag

    def __setstate__(self, state: dict[str, Any]) -> None:
        """Unpickling: torch restores groups and state; re-read the tags from the tensors."""
        super().__setstate__(state)
        self._tags = {
            p: p.manifold if isinstance(p, geoopt.ManifoldParameter | geoopt.ManifoldTensor) else None
            for g in self.param_groups
            for p in g["params"]
        }

    def _manifold_of(self, group: dict[str, Any], p: torch.Tensor) -> geoopt.Manifold | None:
        manifold = group["manifold"]
        return manifold if manifold is not None else self._tags.get(p)

    # --- the step -------------------------------------------------------------------------

    @torch.no_grad()
    def step(self, closure: Any = None) -> Any:
        """Take one step on every parameter with a gradient; returns ``closure()`` if given.

        Raises:
            TypeError: a gradient is sparse.
        """
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            self._step_group(group)
        return loss

    def _step_group(self, group: dict[str, Any]) -> None:
        amsgrad = group["amsgrad"]
        euclid: list[torch.Tensor] = []
        rows: dict[tuple[Any, ...], list[torch.Tensor]] = {}
        generic: list[tuple[torch.Tensor, geoopt.Manifold]] = []
        steps_taken: list[int] = []
        for p in group["params"]:
            if p.grad is None:
                continue
            if p.grad.is_sparse:
                raise TypeError("RiemannianAdam does not support sparse gradients")
            manifold = self._manifold_of(group, p)
            kind = _kind(manifold)
            if kind == _EUCLIDEAN:
                euclid.append(p)
                continue
            state = self._init_manifold_state(p, amsgrad)
            state["step"] += 1
            steps_taken.append(state["step"])
            if kind == _ROWS:
                key = (p.device, p.dtype, p.shape[-1], state["step"])
                rows.setdefault(key, []).append(p)
            else:
                generic.append((p, manifold))  # type: ignore[arg-type]

        if euclid:
            self._euclidean_step(group, euclid)
        for (_, _, _, t), ps in rows.items():
            with torch.autocast(ps[0].device.type, enabled=False):
                _row_step(
                    ps,
                    [p.grad for p in ps],  # type: ignore[misc]
                    [self.state[p]["exp_avg"] for p in ps],
                    [self.state[p]["exp_avg_sq"] for p in ps],
                    [self.state[p]["max_exp_avg_sq"] for p in ps] if amsgrad else None,
                    self._hyper(group, t),
                    group["cpu_threads"],
                )
        for p, manifold in generic:
            self._generic_step(group, p, manifold)

        every = group["stabilize"]
        if every is not None and any(t % every == 0 for t in steps_taken):
            self._stabilize_group(group)

    def _hyper(self, group: dict[str, Any], t: int) -> RowAdamHyper:
        beta1, beta2 = group["betas"]
        return RowAdamHyper(
            lr=float(group["lr"]),
            beta1=float(beta1),
            beta2=float(beta2),
            eps=float(group["eps"]),
            weight_decay=float(group["weight_decay"]),
            amsgrad=bool(group["amsgrad"]),
            maximize=bool(group["maximize"]),
            bias_correction1=1.0 - float(beta1) ** t,
            bias_correction2=1.0 - float(beta2) ** t,
        )

    def _init_manifold_state(self, p: torch.Tensor, amsgrad: bool) -> dict[str, Any]:
        """State of a manifold parameter; ``exp_avg_sq`` is allocated at its first step."""
        state = self.state[p]
        if not state:
            state["step"] = 0
            state["exp_avg"] = torch.zeros_like(
                p, dtype=_state_dtype(p), memory_format=torch.contiguous_format
            )
            manifold_rows = (*p.shape[:-1], 1)
            state["exp_avg_sq"] = torch.zeros(manifold_rows, dtype=_state_dtype(p), device=p.device)
        if amsgrad and "max_exp_avg_sq" not in state:
            state["max_exp_avg_sq"] = torch.zeros_like(state["exp_avg_sq"])
        return state

    def _euclidean_step(self, group: dict[str, Any], params: list[torch.Tensor]) -> None:
        """Plain Adam through torch's own implementation (fused, foreach or per tensor)."""
        fused, foreach = group["fused"], group["foreach"]
        if fused is None and foreach is None:
            fused = all(
                p.device.type in _FUSED_DEVICES and torch.is_floating_point(p) for p in params
            )
        grads, exp_avgs, exp_avg_sqs, max_sqs, steps = [], [], [], [], []
        for p in params:
            state = self.state[p]
            if not state:
                state["step"] = torch.zeros((), dtype=torch.float32, device=p.device)
                state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
            if group["amsgrad"] and "max_exp_avg_sq" not in state:
                state["max_exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
            if fused and state["step"].device != p.device:
                state["step"] = state["step"].to(p.device)
            grads.append(p.grad)
            exp_avgs.append(state["exp_avg"])
            exp_avg_sqs.append(state["exp_avg_sq"])
            steps.append(state["step"])
            if group["amsgrad"]:
                max_sqs.append(state["max_exp_avg_sq"])
        beta1, beta2 = group["betas"]
        torch_adam(
            params,
            grads,
            exp_avgs,
            exp_avg_sqs,
            max_sqs,
            steps,
            foreach=foreach if not fused else None,
            fused=bool(fused),
            has_complex=any(torch.is_complex(p) for p in params),
            amsgrad=group["amsgrad"],
            beta1=beta1,
            beta2=beta2,
            lr=group["lr"],
            weight_decay=group["weight_decay"],
            eps=group["eps"],
            maximize=group["maximize"],
        )

    def _generic_step(self, group: dict[str, Any], p: torch.Tensor, manifold: geoopt.Manifold) -> None:
        """Any other manifold, through its own operations (the geoopt rule, one tensor)."""
        state = self.state[p]
        beta1, beta2 = group["betas"]
        dtype = _state_dtype(p)
        with torch.autocast(p.device.type, enabled=False):
            x = p.to(dtype)
            g = p.grad.to(dtype)  # type: ignore[union-attr]
            if group["maximize"]:
                g = -g
            if group["weight_decay"]:
                g = g.add(x, alpha=group["weight_decay"])
            r = manifold.egrad2rgrad(x, g)
            comp = manifold.component_inner(x, r)
            if state["exp_avg_sq"].shape != comp.shape:
                # first step: the state was sized for rows; size it by component_inner
                if state["step"] != 1:
                    raise ValueError(
                        f"exp_avg_sq of shape {tuple(state['exp_avg_sq'].shape)} does not fit "
                        f"component_inner of {manifold!r}, shape {tuple(comp.shape)}"
                    )
                state["exp_avg_sq"] = torch.zeros(comp.shape, dtype=dtype, device=p.device)
                state.pop("max_exp_avg_sq", None)
            if group["amsgrad"] and "max_exp_avg_sq" not in state:
                state["max_exp_avg_sq"] = torch.zeros_like(state["exp_avg_sq"])
            t = state["step"]
            m, v = state["exp_avg"], state["exp_avg_sq"]
            m.mul_(beta1).add_(r, alpha=1.0 - beta1)
            v.mul_(beta2).add_(comp, alpha=1.0 - beta2)
            if group["amsgrad"]:
                torch.maximum(state["max_exp_avg_sq"], v, out=state["max_exp_avg_sq"])
                v = state["max_exp_avg_sq"]
            denom = v.div(1.0 - beta2**t).sqrt_().add_(group["eps"])
            u = m.div(1.0 - beta1**t).div_(denom).mul_(-group["lr"])
            new_x, new_m = manifold.retr_transp(x, u, m)
            p.copy_(new_x)
            m.copy_(new_m)

    # --- stabilization --------------------------------------------------------------------

    @torch.no_grad()
    def stabilize(self) -> None:
        """Re-project every manifold parameter (``projx``) and its ``exp_avg`` (``proju``)."""
        for group in self.param_groups:
            self._stabilize_group(group)

    def _stabilize_group(self, group: dict[str, Any]) -> None:
        for p in group["params"]:
            manifold = self._manifold_of(group, p)
            state = self.state.get(p)
            if _kind(manifold) == _EUCLIDEAN or not state:
                continue
            with torch.autocast(p.device.type, enabled=False):
                p.copy_(manifold.projx(p))  # type: ignore[union-attr]
                m = state["exp_avg"]
                m.copy_(manifold.proju(p.to(m.dtype), m))  # type: ignore[union-attr]

    # --- checkpoints ----------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """torch's state dict, each group's ``manifold`` replaced by its ``repr`` (or None).

        Plain data only, so ``torch.load(..., weights_only=True)`` reads it back.
        """
        sd = super().state_dict()
        for g in sd["param_groups"]:
            m = g.get("manifold")
            g["manifold"] = None if m is None else repr(m)
        return sd

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Load a [state_dict][manifold_align.optim.radam.RiemannianAdam.state_dict]; the groups keep this optimizer's manifolds.

        Float32 state of half-precision manifold parameters stays float32 (torch would cast
        it to the parameter's dtype).

        Raises:
            ValueError: the number of groups differs, or a group's saved manifold ``repr``
                differs from this optimizer's.
        """
        saved_groups = state_dict["param_groups"]
        if len(saved_groups) != len(self.param_groups):
            raise ValueError(
                f"state_dict: has {len(saved_groups)} parameter groups, this optimizer "
                f"{len(self.param_groups)}"
            )
        manifolds = [g["manifold"] for g in self.param_groups]
        for i, (saved, current) in enumerate(zip(saved_groups, manifolds)):
            want = None if current is None else repr(current)
            if saved.get("manifold") != want:
                raise ValueError(
                    f"state_dict: param_groups[{i}] was saved with manifold "
                    f"{saved.get('manifold')!r}, this optimizer has {want!r}"
                )
        self._check_state_shapes(state_dict)
        super().load_state_dict(state_dict)
        for g, m in zip(self.param_groups, manifolds):
            g["manifold"] = m
        saved_ids = [i for g in saved_groups for i in g["params"]]
        params = [p for g in self.param_groups for p in g["params"]]
        for pid, p in zip(saved_ids, params):
            saved = state_dict["state"].get(pid, {})
            state = self.state.get(p, {})
            for key in ("exp_avg", "exp_avg_sq", "max_exp_avg_sq"):
                value = saved.get(key)
                if key in state and torch.is_tensor(value) and value.dtype != state[key].dtype:
                    state[key] = value.to(device=p.device, copy=True)


    def _check_state_shapes(self, state_dict: dict[str, Any]) -> None:
        """Raise ``ValueError`` if a saved moment does not have the shape this optimizer keeps.

        Catches checkpoints of another optimizer (geoopt's full-size ``exp_avg_sq``) or of
        another parameter layout before anything is loaded.
        """
        saved_groups = state_dict["param_groups"]
        for gi, (saved_group, group) in enumerate(zip(saved_groups, self.param_groups)):
            for pi, (pid, p) in enumerate(zip(saved_group["params"], group["params"])):
                saved = state_dict["state"].get(pid, {})
                kind = _kind(self._manifold_of(group, p))
                want = {"exp_avg": tuple(p.shape)}
                if kind == _ROWS:
                    want["exp_avg_sq"] = want["max_exp_avg_sq"] = (*p.shape[:-1], 1)
                elif kind == _EUCLIDEAN:
                    want["exp_avg_sq"] = want["max_exp_avg_sq"] = tuple(p.shape)
                for key, shape in want.items():
                    value = saved.get(key)
                    if torch.is_tensor(value) and tuple(value.shape) != shape:
                        raise ValueError(
                            f"state_dict: param_groups[{gi}]['params'][{pi}] has {key} of shape "
                            f"{tuple(value.shape)}, expected {shape} for "
                            f"{self._manifold_of(group, p)!r}"
                        )


def _row_step(
    ps: list[torch.Tensor],
    grads: list[torch.Tensor],
    exp_avgs: list[torch.Tensor],
    exp_avg_sqs: list[torch.Tensor],
    max_exp_avg_sqs: list[torch.Tensor] | None,
    h: RowAdamHyper,
    cpu_threads: int | None,
) -> None:
    """One step of row-normalized parameters of one device: the one-pass kernel where there
    is one (numba on CPU, Triton on CUDA), else the cache-blocked torch kernel."""
    device = ps[0].device.type
    if device == "cpu" and fused_cpu.available():
        threads = cpu_threads if cpu_threads is not None else torch.get_num_threads()
        fused_cpu.row_adam_fused_(
            ps, grads, exp_avgs, exp_avg_sqs, max_exp_avg_sqs, h, threads=threads
        )
        return
    if device == "cuda":
        triton_kernel = _triton_kernel()
        if triton_kernel is not None:
            triton_kernel(ps, grads, exp_avgs, exp_avg_sqs, max_exp_avg_sqs, h)
            return
    if device == "cpu":
        _notice_once("cpu", f"numba is not available ({fused_cpu.unavailable_reason()})")
    with _intra_op_threads(cpu_threads if device == "cpu" else None):
        row_adam_(ps, grads, exp_avgs, exp_avg_sqs, max_exp_avg_sqs, h)


_NOTICED: set[str] = set()


def _notice_once(device: str, why: str) -> None:
    """One warning per process and device that the one-pass kernel is not used, and why."""
    if device not in _NOTICED:
        _NOTICED.add(device)
        warnings.warn(
            f"RiemannianAdam: {why}; {device} manifold parameters use the slower cache-blocked "
            f"torch kernel (same results)",
            RuntimeWarning,
            stacklevel=4,
        )


def _triton_kernel() -> Any:
    """[row_adam_triton_][manifold_align.optim.fused_triton.row_adam_triton_], or ``None``
    (with the one-time notice) where Triton cannot be imported."""
    try:
        from manifold_align.optim.fused_triton import row_adam_triton_
    except Exception as exc:  # ImportError, or a Triton that fails to initialise
        _notice_once("cuda", f"Triton is not available ({type(exc).__name__}: {exc})")
        return None
    return row_adam_triton_


@contextlib.contextmanager
def _intra_op_threads(n: int | None) -> Iterator[None]:
    """Run the block with ``torch.set_num_threads(n)``, restoring the previous count after.

    ``None`` leaves torch's setting alone (nothing is read or written).
    """
    before = torch.get_num_threads()
    if n is None or n == before:
        yield
        return
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _check_real(name: str, value: Any, *, low: float, high: float = math.inf) -> None:
    """Raise ``ValueError`` unless ``low <= value < high`` (``value`` a real number)."""
    if isinstance(value, bool) or not isinstance(value, Real | torch.Tensor):
        raise ValueError(f"{name}: expected a real number, got {value!r}")
    v = float(value)
    if not (low <= v < high) or math.isnan(v):
        bound = f"[{low}, {high})" if math.isfinite(high) else f">= {low}"
        raise ValueError(f"{name}: expected a value in {bound}, got {v}")


def _check_fits(manifold: geoopt.Manifold, p: torch.Tensor, name: str) -> None:
    """Raise unless ``p`` is floating point and ends with ``manifold``'s point shape."""
    if not torch.is_floating_point(p):
        raise TypeError(f"{name}: a parameter on {manifold!r} must be floating point, got {p.dtype}")
    shape = getattr(manifold, "point_shape", None)
    if shape is None:
        ok = p.dim() >= max(manifold.ndim, 1)
        expected = f"at least {max(manifold.ndim, 1)} dimension(s)"
    else:
        shape = tuple(shape)
        ok = p.dim() >= len(shape) and tuple(p.shape[p.dim() - len(shape) :]) == shape
        expected = f"(..., {', '.join(map(str, shape))})"
    if not ok:
        raise ValueError(f"{name}: expected shape {expected} for {manifold!r}, got {tuple(p.shape)}")
