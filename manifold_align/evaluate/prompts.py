"""Class names and prompt templates: the bundled standard sets and the user's own files.

Bundled (``manifold_align/evaluate/assets/``, sources and licenses in ``SOURCES.md`` there):

* class names: ``imagenet1k`` (1,000, with ImageNet's WordNet ids), ``cifar10``, ``cifar100``;
* templates: ``imagenet1k`` (OpenAI's 80), ``imagenet1k-7`` (OpenAI's 7-template subset),
  ``cifar10`` / ``cifar100`` (the 18 CIFAR templates).

A user's **names file** is UTF-8 text: either one class name a line, in label order
(``classnames.txt``, as CLIP_benchmark writes it), or one ``folder<TAB>name`` pair a line that
maps an image folder's sub-folder names to class names (``classnames.tsv``); blank lines are
ignored. A **templates file** has one template a line with exactly one placeholder, ``{}`` or
CLIP_benchmark's ``{c}`` (read as ``{}``). Bad files raise ``ValueError`` naming the file and
the line, before anything is encoded.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

__all__ = [
    "BUNDLED_CLASSNAMES",
    "BUNDLED_TEMPLATES",
    "bundled_classnames",
    "bundled_templates",
    "check_classnames",
    "check_templates",
    "imagenet_wnids",
    "read_names_file",
    "read_templates",
]

BUNDLED_CLASSNAMES: dict[str, str] = {
    "imagenet1k": "imagenet1k_classnames.txt",
    "cifar10": "cifar10_classnames.txt",
    "cifar100": "cifar100_classnames.txt",
}
"""Benchmark name -> bundled class-name file (label order)."""

BUNDLED_TEMPLATES: dict[str, str] = {
    "imagenet1k": "imagenet1k_templates.txt",
    "imagenet1k-7": "imagenet1k_templates_7.txt",
    "cifar10": "cifar_templates.txt",
    "cifar100": "cifar_templates.txt",
}
"""Template-set name -> bundled template file."""

#: ImageNet's standard names repeat two labels (see ``assets/SOURCES.md``); they are kept so
#: numbers match the field's, and are the only repeats accepted.
_KNOWN_REPEATS = {"imagenet1k": {"missile", "sunglasses"}}


def _asset_lines(filename: str) -> list[str]:
    text = resources.files("manifold_align.evaluate").joinpath("assets", filename).read_text("utf-8")
    return [line.strip() for line in text.splitlines() if line.strip()]


def bundled_classnames(name: str) -> list[str]:
    """The bundled class names of benchmark ``name`` in label order.

    Raises:
        ValueError: if ``name`` has no bundled names (listing those that do).
    """
    if name not in BUNDLED_CLASSNAMES:
        raise ValueError(f"classnames: no bundled names for {name!r}; bundled: {sorted(BUNDLED_CLASSNAMES)}")
    return _asset_lines(BUNDLED_CLASSNAMES[name])


def bundled_templates(name: str) -> list[str]:
    """The bundled template set ``name`` (each with one ``{}``).

    Raises:
        ValueError: if ``name`` is not a bundled set (listing them).
    """
    if name not in BUNDLED_TEMPLATES:
        raise ValueError(f"templates: no bundled set {name!r}; bundled: {sorted(BUNDLED_TEMPLATES)}")
    return _asset_lines(BUNDLED_TEMPLATES[name])


def imagenet_wnids() -> list[str]:
    """ImageNet-1k's 1,000 WordNet ids in label order (sorted): the ``val/<wnid>/`` folders."""
    return _asset_lines("imagenet1k_wnids.txt")


def _read_lines(path: str | Path, what: str) -> list[tuple[int, str]]:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ValueError(f"{what}: file {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"{what}: cannot read {path} as UTF-8 text ({exc})") from None
    lines = [(i + 1, line.strip()) for i, line in enumerate(text.splitlines())]
    return [(n, line) for n, line in lines if line]


def check_classnames(names: list[str], source: str, *, allowed_repeats: set[str] = frozenset()) -> list[str]:
    """Check class names: at least one, non-empty, no name twice (beyond ``allowed_repeats``).

    Raises:
        ValueError: naming ``source`` and the first repeated name.
    """
    if not names:
        raise ValueError(f"classnames: {source} holds no class name")
    seen: set[str] = set()
    for name in names:
        if not isinstance(name, str) or not name.strip():
            raise ValueError(f"classnames: {source} holds an empty class name")
        if name in seen and name not in allowed_repeats:
            raise ValueError(
                f"classnames: {source} names {name!r} more than once; two classes with one "
                f"name get the same prompts and cannot be told apart"
            )
        seen.add(name)
    return list(names)


def read_names_file(path: str | Path) -> tuple[list[str], dict[str, int] | None]:
    """Read a names file: ``(class names in label order, folder -> label or None)``.

    One name a line gives ``(names, None)``; ``folder<TAB>name`` lines give the names in
    first-appearance order and the folder map (several folders may share a name).

    Raises:
        ValueError: missing or unreadable file, no names, a mix of the two forms, a folder
            listed twice, or (one name a line) a repeated name; the file and line are named.
    """
    lines = _read_lines(path, "classnames")
    if not lines:
        raise ValueError(f"classnames: {path} holds no class name")
    tabbed = ["\t" in line for _, line in lines]
    if any(tabbed) and not all(tabbed):
        n = next(n for (n, _), t in zip(lines, tabbed) if not t)
        raise ValueError(f"classnames: {path} line {n}: expected 'folder<TAB>name' like the other lines")
    if not all(tabbed):
        return check_classnames([line for _, line in lines], str(path)), None
    names: list[str] = []
    index: dict[str, int] = {}
    folders: dict[str, int] = {}
    for n, line in lines:
        folder, _, name = (part.strip() for part in line.partition("\t"))
        if not folder or not name:
            raise ValueError(f"classnames: {path} line {n}: expected 'folder<TAB>name', got {line!r}")
        if folder in folders:
            raise ValueError(f"classnames: {path} line {n}: folder {folder!r} is listed twice")
        if name not in index:
            index[name] = len(names)
            names.append(name)
        folders[folder] = index[name]
    return names, folders


def check_templates(templates: list[str], source: str) -> list[str]:
    """Templates with one placeholder each; CLIP_benchmark's ``{c}`` is rewritten as ``{}``.

    Raises:
        ValueError: no templates, or a template without exactly one ``{}`` / ``{c}``
            (naming ``source`` and the template).
    """
    if not templates:
        raise ValueError(f"templates: {source} holds no template")
    out = []
    for t in templates:
        t = t.replace("{c}", "{}")
        if t.count("{}") != 1:
            raise ValueError(
                f"templates: {source}: each template needs exactly one '{{}}' (or '{{c}}') "
                f"where the class name goes, got {t!r}"
            )
        out.append(t)
    return out


def read_templates(spec: str | Path) -> list[str]:
    """A bundled template set by name ([BUNDLED_TEMPLATES][manifold_align.evaluate.prompts.BUNDLED_TEMPLATES]) or a templates file.

    Raises:
        ValueError: as [check_templates][manifold_align.evaluate.prompts.check_templates], or a missing/unreadable file.
    """
    if str(spec) in BUNDLED_TEMPLATES:
        return bundled_templates(str(spec))
    if not Path(spec).exists():
        raise ValueError(
            f"templates: {str(spec)!r} is neither a file nor a bundled set "
            f"({', '.join(sorted(BUNDLED_TEMPLATES))})"
        )
    return check_templates([line for _, line in _read_lines(spec, "templates")], str(spec))


def known_repeats(name: str) -> set[str]:
    """Names allowed to repeat in the bundled list of benchmark ``name`` (ImageNet's two)."""
    return set(_KNOWN_REPEATS.get(name, ()))
