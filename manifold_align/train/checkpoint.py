"""Step-granularity checkpoints: atomic, pickle-free, and refusing a foreign configuration.

A checkpoint is a directory ``<root>/step_000123/`` holding

* ``model.safetensors``: the model's state dict (shared tensors stored once);
* ``optimizer.safetensors``: every tensor of every optimizer's state, keyed
  ``<optimizer>.<param index>.<name>``;
* ``rng.safetensors``: torch's CPU (and CUDA) generator states;
* ``state.json``: everything else: the step, the data position, the optimizers' non-tensor
  state and hyperparameters, numpy's and Python's generator states, and the resolved config;
* ``config.yaml``: the same config, for people;
* ``manifest.json``: size and sha256 of every other file, written last.

It is written into a temporary directory beside its final place and renamed into place with
one ``os.replace``, then ``<root>/latest`` (a one-line pointer file, itself replaced
atomically) is updated. A process killed at any moment leaves either the previous or the new
checkpoint as ``latest``, never a half-written one. Loading reads only safetensors and JSON:
nothing is unpickled. Every file a load reads is first checked against the manifest, and a
damaged file (truncated, empty, pickled, of another checksum, unreadable JSON) is named in a
[CheckpointError][manifold_align.train.checkpoint.CheckpointError]; checkpoints written before manifests existed load without the
checksum check. Files and folders get the umask's modes (``0644``/``0755`` under ``022``).
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import re
import shutil
import tempfile
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, load_model, save_file, save_model

from manifold_align.files import apply_umask, fsync_dir, fsync_file, write_atomic

__all__ = [
    "CheckpointError",
    "capture_rng",
    "config_mismatches",
    "find_checkpoint",
    "load_checkpoint",
    "read_state",
    "restore_rng",
    "save_checkpoint",
    "verify_checkpoint",
]

FORMAT_VERSION = 1
LATEST = "latest"
MANIFEST = "manifest.json"
_PREFIX = "step_"
_TMP_PREFIX = ".tmp-"


class CheckpointError(RuntimeError):
    """A checkpoint is missing, incomplete, or belongs to another configuration or model."""


# ---------------------------------------------------------------------------- random states


def capture_rng() -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """Snapshot every global generator: ``(json_part, tensor_part)``.

    ``json_part`` holds numpy's MT19937 state and Python's ``random`` state as lists;
    ``tensor_part`` holds torch's CPU generator state and one state per CUDA device (uint8).
    """
    name, keys, pos, has_gauss, gauss = np.random.get_state()  # noqa: NPY002 - the global generator is what we snapshot
    version, internal, gauss_next = random.getstate()
    json_part = {
        "numpy": [name, keys.tolist(), int(pos), int(has_gauss), float(gauss)],
        "python": [version, list(internal), gauss_next],
    }
    tensors = {"torch_cpu": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        for i, state in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"torch_cuda_{i}"] = state
    return json_part, tensors


def restore_rng(json_part: Mapping[str, Any], tensors: Mapping[str, torch.Tensor]) -> None:
    """Inverse of [capture_rng][manifold_align.train.checkpoint.capture_rng]: set numpy's, Python's and torch's global generators."""
    name, keys, pos, has_gauss, gauss = json_part["numpy"]
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), pos, has_gauss, gauss))  # noqa: NPY002
    version, internal, gauss_next = json_part["python"]
    random.setstate((version, tuple(internal), gauss_next))
    torch.set_rng_state(tensors["torch_cpu"])
    cuda = [tensors[k] for k in sorted(k for k in tensors if k.startswith("torch_cuda_"))]
    if cuda and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(cuda[: torch.cuda.device_count()])


# ---------------------------------------------------------------------------- optimizer state


def _jsonable(value: Any) -> bool:
    if value is None or isinstance(value, (bool, int, float, str)):
        return True
    if isinstance(value, (list, tuple)):
        return all(_jsonable(v) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and _jsonable(v) for k, v in value.items())
    return False


def _split_optimizer(
    name: str, optimizer: torch.optim.Optimizer
) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """An optimizer's state dict as (JSON part, flat tensor dict)."""
    sd = optimizer.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    plain: dict[str, dict[str, Any]] = {}
    for idx, entry in sd["state"].items():
        for key, value in entry.items():
            if isinstance(value, torch.Tensor):
                tensors[f"{name}.{idx}.{key}"] = value.detach().contiguous().cpu()
            elif _jsonable(value):
                plain.setdefault(str(idx), {})[key] = value
            else:
                raise CheckpointError(
                    f"optimizer {name!r}: state {key!r} of parameter {idx} is a "
                    f"{type(value).__name__}, which a checkpoint cannot store without pickling"
                )
    # Hyperparameters only; objects such as a group's ``manifold`` stay with the live optimizer.
    groups = [{k: v for k, v in g.items() if _jsonable(v)} for g in sd["param_groups"]]
    return {"state": plain, "param_groups": groups}, tensors


def _restore_optimizer(
    name: str,
    optimizer: torch.optim.Optimizer,
    saved: Mapping[str, Any],
    tensors: Mapping[str, torch.Tensor],
) -> None:
    current = optimizer.state_dict()
    groups = saved["param_groups"]
    if len(groups) != len(current["param_groups"]):
        raise CheckpointError(
            f"optimizer {name!r}: checkpoint has {len(groups)} parameter groups, "
            f"the model gives {len(current['param_groups'])}"
        )
    merged = []
    for i, (now, then) in enumerate(zip(current["param_groups"], groups)):
        if list(now["params"]) != list(then["params"]):
            raise CheckpointError(
                f"optimizer {name!r}: parameter group {i} holds {len(then['params'])} "
                f"parameters in the checkpoint, {len(now['params'])} in the model"
            )
        group = dict(now)
        group.update({k: v for k, v in then.items() if k != "params"})
        if "betas" in group:
            group["betas"] = tuple(group["betas"])
        merged.append(group)
    state: dict[int, dict[str, Any]] = {}
    prefix = f"{name}."
    for key, value in tensors.items():
        if key.startswith(prefix):
            idx, field = key[len(prefix) :].split(".", 1)
            state.setdefault(int(idx), {})[field] = value
    for idx, entry in saved["state"].items():
        state.setdefault(int(idx), {}).update(entry)
    optimizer.load_state_dict({"state": state, "param_groups": merged})


# ---------------------------------------------------------------------------- config identity


def _flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(tree, Mapping):
        out: dict[str, Any] = {}
        for k, v in tree.items():
            out.update(_flatten(v, f"{prefix}.{k}" if prefix else str(k)))
        return out if out or not prefix else {prefix: {}}
    return {prefix: list(tree) if isinstance(tree, tuple) else tree}


def config_mismatches(
    saved: Mapping[str, Any],
    current: Mapping[str, Any],
    ignore: Iterable[str] = (),
    defaults: Mapping[str, Any] | None = None,
) -> list[str]:
    """Dotted keys on which two config trees differ, as ``"key: saved -> current"`` lines.

    Keys equal to an entry of ``ignore`` or below it (``"train.steps"``, ``"data.num_workers"``)
    are not compared: they may change between a run and its resumption. A key the saved tree
    lacks but ``defaults`` (the config class's default tree) has was added to the library after
    the checkpoint was written: the checkpoint ran with its default, so that is compared.
    """
    skip = tuple(ignore)

    def ignored(key: str) -> bool:
        return any(key == s or key.startswith(s + ".") for s in skip)

    a, b = _flatten(saved), _flatten(current)
    for key, value in _flatten(defaults or {}).items():
        if key in b:  # a key of today's tree; an older checkpoint ran at its default
            a.setdefault(key, value)
    lines = []
    for key in sorted(set(a) | set(b)):
        if ignored(key):
            continue
        va, vb = a.get(key, "<absent>"), b.get(key, "<absent>")
        if va != vb:
            lines.append(f"{key}: {va!r} in the checkpoint, {vb!r} now")
    return lines


# ---------------------------------------------------------------------------- integrity


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _write_manifest(folder: Path) -> None:
    """``manifest.json``: size and sha256 of every other file of ``folder`` (written last)."""
    files = {
        f.name: {"bytes": f.stat().st_size, "sha256": _sha256(f)}
        for f in sorted(folder.iterdir()) if f.name != MANIFEST
    }
    (folder / MANIFEST).write_text(json.dumps({"format": FORMAT_VERSION, "files": files}, indent=1))


def _manifest(folder: Path) -> dict[str, Any] | None:
    """The manifest's ``files`` table, or ``None`` for a checkpoint written before manifests."""
    file = folder / MANIFEST
    if not file.exists():
        return None
    try:
        files = json.loads(file.read_bytes().decode())["files"]
        if not all(isinstance(v, dict) and isinstance(v["sha256"], str) and isinstance(v["bytes"], int)
                   for v in files.values()):
            raise TypeError("an entry lacks 'bytes' or 'sha256'")
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise CheckpointError(f"{file}: damaged checksum manifest ({exc})") from None
    return files


def verify_checkpoint(path: str | Path, names: Iterable[str] | None = None) -> bool:
    """Check files of checkpoint ``path`` against the sha256 sums of its ``manifest.json``.

    Args:
        path: a checkpoint directory.
        names: the files to check (default: every file the manifest lists).

    Returns:
        ``True`` if verified; ``False`` for a checkpoint written before manifests existed
        (nothing to verify against: it still loads, with the format checks only).

    Raises:
        CheckpointError: a file is missing, of another size (truncated) or of another
            checksum than at save (changed or damaged since), or the manifest is damaged;
            the file is named.
    """
    path = Path(path)
    files = _manifest(path)
    if files is None:
        return False
    for name in files if names is None else names:
        file = path / name
        if name not in files:
            raise CheckpointError(f"{file}: not listed in the checkpoint's {MANIFEST}")
        if not file.is_file():
            raise CheckpointError(f"{file}: missing from the checkpoint ({MANIFEST} lists it)")
        size, want = file.stat().st_size, files[name]["bytes"]
        if size != want:
            raise CheckpointError(
                f"{file}: {size} bytes, but {want} when the checkpoint was written (truncated "
                f"or replaced); use an earlier checkpoint"
            )
        if _sha256(file) != files[name]["sha256"]:
            raise CheckpointError(
                f"{file}: sha256 checksum differs from the one recorded at save (the file "
                f"was damaged or changed since); use an earlier checkpoint"
            )
    return True


def _safetensors(file: Path, read: Callable[[str], Any]) -> Any:
    """``read(str(file))`` with a safetensors file's failures as one named CheckpointError."""
    try:
        head = file.open("rb").read(8)
    except OSError as exc:
        raise CheckpointError(f"{file}: cannot read ({exc.strerror})") from None
    if not head:
        raise CheckpointError(f"{file}: empty (0 bytes), not a safetensors file")
    if head[:4] == b"PK\x03\x04" or head[:1] == b"\x80":
        raise CheckpointError(
            f"{file}: a torch.save/pickle file, not safetensors; checkpoints never unpickle "
            f"(convert it with safetensors.torch.save_file)"
        )
    try:
        return read(str(file))
    except (SafetensorError, OSError) as exc:
        raise CheckpointError(f"{file}: not a readable safetensors file, truncated or damaged ({exc})") from None


# ---------------------------------------------------------------------------- save / find / load


def _rotate(root: Path, keep: int, protect: Iterable[Path]) -> None:
    """Delete all but the newest ``keep`` ``step_*`` checkpoints of ``root``; never one of
    ``protect`` nor the one ``latest`` points to."""
    spared = {Path(p).resolve() for p in protect}
    pointer = root / LATEST
    if pointer.is_file():
        spared.add((root / pointer.read_text().strip()).resolve())
    done = sorted(p for p in root.glob(_PREFIX + "*") if (p / "state.json").is_file())
    for old in done[:-keep]:
        if old.resolve() not in spared:
            shutil.rmtree(old, ignore_errors=True)


def save_checkpoint(
    root: str | Path,
    step: int,
    model: torch.nn.Module,
    optimizers: Mapping[str, torch.optim.Optimizer],
    extra: Mapping[str, Any],
    config: Mapping[str, Any],
    keep: int = 0,
    files: Mapping[str, str | Path] | None = None,
    protect: Iterable[str | Path] = (),
) -> Path:
    """Write the checkpoint for ``step`` under ``root`` atomically and point ``latest`` at it.

    Every file is flushed to disk, its size and sha256 go to ``manifest.json`` (written
    last), the folder gets the umask's modes, and only then is it renamed into place and
    ``latest`` moved to it.

    Args:
        root: the run's checkpoint directory (created if absent).
        step: number of optimizer steps taken, ``>= 0``; names the directory ``step_{step:08d}``.
        model: its ``state_dict`` goes to ``model.safetensors``.
        optimizers: named optimizers (``{"adamw": ..., "riemannian": ...}``).
        extra: JSON-serialisable training state (data position, counters).
        config: the resolved config tree (plain dicts), stored to be checked on resume.
        keep: keep only the newest ``keep`` checkpoints of ``root`` (``0`` keeps all); the
            ones in ``protect`` and the one ``latest`` points to are never deleted.
        files: extra files copied in, ``{name in the checkpoint: source path}`` (e.g. the
            run's ``tokenizer.json``, so that a checkpoint alone rebuilds the model).
        protect: checkpoint directories rotation must keep (the one a run resumed from).

    Returns:
        The final checkpoint directory.

    Raises:
        ValueError: for a negative ``step`` or ``keep``.
        CheckpointError: optimizer state holds an object that cannot be stored without
            pickle; the write failed (a full disk: the previous checkpoint and ``latest``
            are left as they were, the partial one is removed).
    """
    if step < 0:
        raise ValueError(f"step: expected >= 0, got {step}")
    if keep < 0:
        raise ValueError(f"keep: expected >= 0, got {keep}")
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    for stale in root.glob(_TMP_PREFIX + "*"):  # left by a process killed mid-write
        shutil.rmtree(stale, ignore_errors=True)
    name = f"{_PREFIX}{step:08d}"
    tmp = Path(tempfile.mkdtemp(prefix=f"{_TMP_PREFIX}{name}-", dir=root))
    try:
        _write_files(tmp, model, optimizers, extra, config, step, files)
    except (OSError, SafetensorError) as exc:  # e.g. a full disk: keep the last checkpoint
        shutil.rmtree(tmp, ignore_errors=True)
        raise CheckpointError(
            f"cannot write checkpoint {root / name}: {getattr(exc, 'strerror', None) or exc}; the previous "
            f"checkpoint ({(root / LATEST).read_text().strip() if (root / LATEST).is_file() else 'none'})"
            f" is intact"
        ) from None

    final = root / name
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)
    fsync_dir(root)
    try:
        write_atomic(root / LATEST, name + "\n", durable=True)
    except OSError as exc:
        raise CheckpointError(
            f"checkpoint {final} is complete, but {root / LATEST} could not be updated "
            f"({exc.strerror or exc}); it still names the previous checkpoint"
        ) from None

    if keep:
        _rotate(root, keep, [final, *protect])
    return final


def _write_files(
    tmp: Path,
    model: torch.nn.Module,
    optimizers: Mapping[str, torch.optim.Optimizer],
    extra: Mapping[str, Any],
    config: Mapping[str, Any],
    step: int,
    files: Mapping[str, str | Path] | None,
) -> None:
    save_model(model, str(tmp / "model.safetensors"))
    opt_json, opt_tensors = {}, {}
    for opt_name, optimizer in optimizers.items():
        opt_json[opt_name], tensors = _split_optimizer(opt_name, optimizer)
        opt_tensors.update(tensors)
    save_file(opt_tensors, str(tmp / "optimizer.safetensors"))
    rng_json, rng_tensors = capture_rng()
    save_file(rng_tensors, str(tmp / "rng.safetensors"))
    state = {
        "format": FORMAT_VERSION,
        "step": int(step),
        "extra": dict(extra),
        "optimizers": opt_json,
        "rng": rng_json,
        "config": dict(config),
    }
    (tmp / "state.json").write_text(json.dumps(state))
    (tmp / "config.yaml").write_text(yaml.safe_dump(dict(config), sort_keys=False))
    for name_in_ckpt, source in (files or {}).items():
        shutil.copyfile(source, tmp / name_in_ckpt)
    for f in tmp.iterdir():
        fsync_file(f)
    _write_manifest(tmp)
    fsync_file(tmp / MANIFEST)
    apply_umask(tmp)


def find_checkpoint(spec: str | Path, root: str | Path) -> Path:
    """Resolve ``spec`` (``"latest"``, a checkpoint directory, or a run/checkpoint root).

    ``"latest"`` reads ``<root>/latest``; a directory holding ``state.json`` is taken as is; a
    directory holding a ``latest`` pointer (or a ``checkpoints/latest``) is resolved through it.

    Raises:
        CheckpointError: naming the path when nothing complete is found, or when the
            ``latest`` pointer does not hold a ``step_XXXXXXXX`` name.
    """
    if str(spec) == LATEST:
        base = Path(root)
    else:
        base = Path(spec)
        if (base / "state.json").is_file():
            return base
        if (base / "checkpoints" / LATEST).is_file():
            base = base / "checkpoints"
    pointer = base / LATEST
    if not pointer.is_file():
        raise CheckpointError(f"no checkpoint to resume: {pointer} does not exist")
    try:
        name = pointer.read_bytes().decode().strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{pointer}: unreadable pointer ({exc})") from None
    if not re.fullmatch(_PREFIX + r"\d{8}", name):
        raise CheckpointError(
            f"{pointer}: expected the name of a checkpoint (step_XXXXXXXX), found {name[:40]!r}"
        )
    target = base / name
    if not (target / "state.json").is_file():
        raise CheckpointError(f"{pointer} points to {target}, which is not a complete checkpoint")
    return target


_STATE_KEYS = {"step": int, "extra": dict, "optimizers": dict, "rng": dict, "config": dict}


def read_state(path: str | Path) -> dict[str, Any]:
    """The JSON part of checkpoint ``path`` (step, extra, config, ...), verified against the
    checkpoint's checksum manifest.

    Raises:
        CheckpointError: ``state.json`` missing, damaged (checksum, JSON, UTF-8) or lacking a
            key of the expected type (named), or of another format version.
    """
    path = Path(path)
    file = path / "state.json"
    verify_checkpoint(path, ["state.json"])
    try:
        state = json.loads(file.read_bytes().decode())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"cannot read checkpoint state {file}: {exc}") from None
    if not isinstance(state, dict):
        raise CheckpointError(f"{file}: expected a JSON object, found {type(state).__name__}")
    if state.get("format") != FORMAT_VERSION:
        raise CheckpointError(
            f"{file}: checkpoint format {state.get('format')!r}, this version reads {FORMAT_VERSION}"
        )
    for key, kind in _STATE_KEYS.items():
        if not isinstance(state.get(key), kind):
            raise CheckpointError(
                f"{file}: key {key!r} should be a {kind.__name__}, found {state.get(key)!r:.60}"
            )
    return state


def _check_model(path: Path, model: torch.nn.Module) -> None:
    expected = model.state_dict()
    with _safetensors(path, lambda p: safe_open(p, framework="pt")) as f:
        for key in f.keys():
            if key not in expected:
                raise CheckpointError(f"{path}: tensor {key!r} has no counterpart in the model")
            got = tuple(f.get_slice(key).get_shape())
            want = tuple(expected[key].shape)
            if got != want:
                raise CheckpointError(
                    f"{path}: tensor {key!r} has shape {got} in the checkpoint, {want} in the model"
                )


def load_checkpoint(
    path: str | Path,
    model: torch.nn.Module,
    optimizers: Mapping[str, torch.optim.Optimizer] | None,
    config: Mapping[str, Any] | None = None,
    ignore: Iterable[str] = (),
    restore_random: bool = True,
    defaults: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Load checkpoint ``path`` into ``model`` and ``optimizers`` in place; return its state.

    Weights are copied into the existing parameters (so a ``geoopt.ManifoldParameter`` keeps
    its manifold). ``optimizers=None`` loads the weights only (for evaluation). With ``config``
    given, the checkpoint's config must agree on every key not in ``ignore`` (a key the
    checkpoint predates counts as its value in ``defaults``, see [config_mismatches][manifold_align.train.checkpoint.config_mismatches]).
    ``restore_random`` also resets numpy's, Python's and torch's generators. Every file read
    is first checked against the checkpoint's sha256 manifest (a checkpoint written before
    manifests existed loads without that check).

    Returns:
        ``{"step": int, "extra": dict, "config": dict}``.

    Raises:
        CheckpointError: incomplete or damaged checkpoint (the file and what is wrong: a
            checksum, size or format error); a config that differs (each differing key with
            both values); a model tensor missing, extra or of another shape (named); an
            optimizer of another name or parameter layout.
    """
    path = Path(path)
    state = read_state(path)
    if config is not None:
        diff = config_mismatches(state["config"], config, ignore, defaults)
        if diff:
            raise CheckpointError(
                f"checkpoint {path} was written by another configuration:\n  " + "\n  ".join(diff)
            )
    used = ["model.safetensors"]
    if optimizers is not None:
        used.append("optimizer.safetensors")
    if restore_random:
        used.append("rng.safetensors")
    verify_checkpoint(path, used)
    model_file = path / "model.safetensors"
    _check_model(model_file, model)
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    missing, unexpected = _safetensors(
        model_file, lambda p: load_model(model, p, strict=False, device=str(device)))
    if missing or unexpected:
        raise CheckpointError(
            f"{model_file}: model tensors missing from the checkpoint: {sorted(missing)}; "
            f"unexpected: {sorted(unexpected)}"
        )
    if optimizers is not None:
        names_then, names_now = set(state["optimizers"]), set(optimizers)
        if names_then != names_now:
            raise CheckpointError(
                f"{path}: checkpoint has optimizers {sorted(names_then)}, "
                f"the run has {sorted(names_now)}"
            )
        opt_file = path / "optimizer.safetensors"
        tensors = _safetensors(opt_file, load_file)
        for name, optimizer in optimizers.items():
            try:
                _restore_optimizer(name, optimizer, state["optimizers"][name], tensors)
            except (KeyError, ValueError, TypeError, RuntimeError, AttributeError) as exc:
                if isinstance(exc, CheckpointError):
                    raise
                raise CheckpointError(
                    f"{opt_file} / state.json: optimizer {name!r} state does not fit ({exc!r})"
                ) from None
    if restore_random:
        rng_file = path / "rng.safetensors"
        tensors = _safetensors(rng_file, load_file)
        try:
            restore_rng(state["rng"], tensors)
        except (KeyError, ValueError, TypeError, RuntimeError, IndexError) as exc:
            raise CheckpointError(
                f"{rng_file} / state.json 'rng': random generator state is damaged ({exc!r})"
            ) from None
    return {"step": state["step"], "extra": state["extra"], "config": state["config"]}
