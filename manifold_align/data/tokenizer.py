"""Byte-level BPE tokenizer (Hugging Face ``tokenizers``) that emits CLIP-style id rows.

A caption ``c`` becomes the row

$$[\\mathrm{SOT}, t_1, \\dots, t_n, \\mathrm{EOT}, \\mathrm{PAD}, \\dots, \\mathrm{PAD}]
\\in \\mathbb{Z}^{L},\\qquad n \\le L - 2,$$

with the text cleaned first the way CLIP cleans it (HTML entities unescaped, whitespace runs
collapsed to one space, stripped, lower-cased) and truncated so that EOT is always present.

[Tokenizer.train][manifold_align.data.tokenizer.Tokenizer.train] learns a byte-level BPE vocabulary from any iterable of strings;
[Tokenizer.save][manifold_align.data.tokenizer.Tokenizer.save] / [Tokenizer.load][manifold_align.data.tokenizer.Tokenizer.load] use one ``tokenizer.json`` file.
[default_tokenizer][manifold_align.data.tokenizer.default_tokenizer] loads the vocabulary bundled with the package, trained on the
synthetic captions ([manifold_align.data.synthetic][manifold_align.data.synthetic]).

[clip_tokenizer][manifold_align.data.tokenizer.clip_tokenizer] is OpenAI CLIP's own byte-level BPE (49,408 ids, start 49406, end
49407, zero padding, context 77), shipped with the package ([manifold_align.data.clip_bpe][manifold_align.data.clip_bpe])
and cleaned as OpenCLIP cleans (``ftfy``, HTML, whitespace, lower case): its rows equal
``open_clip.get_tokenizer("ViT-B-32")``'s, except that a literal ``<start_of_text>`` or
``<end_of_text>`` inside a caption is dropped here (OpenCLIP keeps it as a special id).

Bringing your own ``tokenizer.json`` (e.g. CLIP's from the Hugging Face hub) works when its
vocabulary holds the start and end tokens (``<|startoftext|>``, ``<|endoftext|>`` or
OpenCLIP's ``<start_of_text>``, ``<end_of_text>``, unless named otherwise). Its own normaliser
and pre-tokeniser are used as they are; its post-processor is bypassed (this class adds
SOT/EOT itself); the pad id is the vocabulary's ``<|pad|>`` if present, else ``0`` (OpenAI
CLIP pads with 0; the text encoder never reads past EOT, so the pad value does not change its
output).

[wordpiece_tokenizer][manifold_align.data.tokenizer.wordpiece_tokenizer] is BERT's WordPiece over a ``vocab.txt`` you bring (the paper's
released text tower reads such ids, 30,522 of them): rows ``[[CLS], t_1 .. t_n, [SEP],
[PAD] ...]``, split as ``transformers.BertTokenizer`` splits ([manifold_align.data.wordpiece][manifold_align.data.wordpiece]).
Saved, it loads back with [Tokenizer.load][manifold_align.data.tokenizer.Tokenizer.load] (the ``[CLS]``/``[SEP]`` names are recognised).
"""

from __future__ import annotations

import html
import re
from collections.abc import Callable, Iterable, Sequence
from importlib import resources
from pathlib import Path

import torch
from tokenizers import Regex, decoders, models, normalizers, pre_tokenizers, trainers
from tokenizers import Tokenizer as HFTokenizer

from manifold_align.data.clip_bpe import CLIP_EOT, CLIP_SOT, clip_backend, clip_clean
from manifold_align.data.wordpiece import (
    WORDPIECE_CLS,
    WORDPIECE_PAD,
    WORDPIECE_SEP,
    wordpiece_backend,
)

__all__ = [
    "CLEANERS",
    "DEFAULT_TOKENIZER_FILE",
    "EOT",
    "PAD",
    "SOT",
    "Tokenizer",
    "basic_clean",
    "clip_tokenizer",
    "default_tokenizer",
    "wordpiece_tokenizer",
]

SOT = "<|startoftext|>"
EOT = "<|endoftext|>"
PAD = "<|pad|>"
DEFAULT_TOKENIZER_FILE = "synthetic_tokenizer.json"
"""Name of the bundled vocabulary under ``manifold_align/data/assets/``."""

_WHITESPACE = re.compile(r"\s+")


def basic_clean(text: str) -> str:
    """CLIP's basic cleaning: unescape HTML twice, collapse whitespace, strip, lower-case.

    Raises:
        TypeError: if ``text`` is not a string.
    """
    if not isinstance(text, str):
        raise TypeError(f"text: got {type(text).__name__}, expected str")
    text = html.unescape(html.unescape(text))
    return _WHITESPACE.sub(" ", text).strip().lower()


def no_clean(text: str) -> str:
    """The text unchanged (WordPiece's normaliser does BERT's cleaning itself).

    Raises:
        TypeError: if ``text`` is not a string.
    """
    if not isinstance(text, str):
        raise TypeError(f"text: got {type(text).__name__}, expected str")
    return text


CLEANERS: dict[str, Callable[[str], str]] = {
    "basic": basic_clean,
    "clip": clip_clean,
    "none": no_clean,
}
"""Text cleanings by name: ``basic`` (`basic_clean`), ``clip`` (OpenCLIP's, with ``ftfy``:
[clip_clean][manifold_align.data.clip_bpe.clip_clean]) and ``none`` (the tokenizer's own
normaliser alone, as BERT's WordPiece runs)."""


class Tokenizer:
    """A ``tokenizers.Tokenizer`` plus CLIP's framing: SOT, text, EOT, padding to ``L``.

    Args:
        tokenizer: the underlying Hugging Face tokenizer.
        context_length: row length ``L`` (``>= 2``: SOT and EOT always fit).
        sot: start-of-text token string.
        eot: end-of-text token string.
        pad: padding token string; if it is not in the vocabulary the pad id is ``0``.
        clean: the cleaning applied before the tokenizer's own normaliser, a key of
            [CLEANERS][manifold_align.data.tokenizer.CLEANERS] (``"basic"`` or ``"clip"``).

    Attributes:
        sot_id, eot_id, pad_id: ids of the special tokens.
        vocab_size: number of ids (including special tokens).
        context_length: ``L``.

    Raises:
        ValueError: if ``context_length < 2``, ``sot``/``eot`` is not in the vocabulary or
            ``clean`` is not a known cleaning.
    """

    def __init__(
        self,
        tokenizer: HFTokenizer,
        context_length: int = 77,
        *,
        sot: str = SOT,
        eot: str = EOT,
        pad: str = PAD,
        clean: str = "basic",
    ) -> None:
        if not isinstance(tokenizer, HFTokenizer):
            raise TypeError(
                f"tokenizer: got {type(tokenizer).__name__}, expected tokenizers.Tokenizer"
            )
        if context_length < 2:
            raise ValueError(f"context_length: got {context_length}, expected >= 2 (SOT and EOT)")
        if clean not in CLEANERS:
            raise ValueError(f"clean: got {clean!r}, expected one of {sorted(CLEANERS)}")
        self._tok = tokenizer
        self.clean = clean
        self.context_length = int(context_length)
        ids = {}
        for name, token in (("sot", sot), ("eot", eot)):
            idx = tokenizer.token_to_id(token)
            if idx is None:
                raise ValueError(f"{name}: token {token!r} is not in the tokenizer's vocabulary")
            ids[name] = idx
        self.sot_id: int = ids["sot"]
        self.eot_id: int = ids["eot"]
        pad_id = tokenizer.token_to_id(pad)
        self.pad_id: int = 0 if pad_id is None else pad_id
        self.sot, self.eot, self.pad = sot, eot, pad
        self._framing = {self.sot_id, self.eot_id} | ({pad_id} if pad_id is not None else set())
        self.vocab_size: int = tokenizer.get_vocab_size(with_added_tokens=True)

    # -- construction ----------------------------------------------------------------------
    @classmethod
    def train(
        cls,
        corpus: Iterable[str],
        vocab_size: int = 1024,
        *,
        context_length: int = 77,
        min_frequency: int = 2,
    ) -> Tokenizer:
        """Learn a byte-level BPE vocabulary of at most ``vocab_size`` ids from ``corpus``.

        The vocabulary holds ``<|startoftext|>``, ``<|endoftext|>``, ``<|pad|>`` (ids 0, 1,
        2), the 256 byte symbols, then the merges in order. The saved file carries a
        normaliser (NFC, whitespace collapse, strip, lower-case), so the cleaning travels with
        the vocabulary.

        Args:
            corpus: iterable of strings (captions); consumed once.
            vocab_size: the largest vocabulary, ``>= 259`` (3 specials + 256 bytes).
            context_length: ``L`` of the returned tokenizer.
            min_frequency: a pair must occur this often to be merged.

        Raises:
            ValueError: if ``vocab_size < 259``.
        """
        if vocab_size < 259:
            raise ValueError(
                f"vocab_size: got {vocab_size}, expected >= 259 (3 special + 256 bytes)"
            )
        tok = HFTokenizer(models.BPE())
        tok.normalizer = normalizers.Sequence(
            [
                normalizers.NFC(),
                normalizers.Replace(Regex(r"\s+"), " "),
                normalizers.Strip(),
                normalizers.Lowercase(),
            ]
        )
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
        tok.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(
            vocab_size=vocab_size,
            min_frequency=min_frequency,
            special_tokens=[SOT, EOT, PAD],
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
            show_progress=False,
        )
        tok.train_from_iterator((basic_clean(t) for t in corpus), trainer=trainer)
        return cls(tok, context_length)

    @classmethod
    def load(
        cls,
        path: str | Path,
        context_length: int = 77,
        *,
        sot: str | None = None,
        eot: str | None = None,
        pad: str = PAD,
        clean: str | None = None,
    ) -> Tokenizer:
        """Load a ``tokenizer.json`` (one written by [save][manifold_align.data.tokenizer.Tokenizer.save], or CLIP's).

        ``sot``/``eot`` default to ``<|startoftext|>``/``<|endoftext|>``, or to OpenCLIP's
        ``<start_of_text>``/``<end_of_text>`` when the vocabulary has those instead (the file
        [clip_tokenizer][manifold_align.data.tokenizer.clip_tokenizer] saves), or to WordPiece's
        ``[CLS]``/``[SEP]`` (pad ``[PAD]``) for a WordPiece model (the file `wordpiece_tokenizer`
        saves); ``clean`` defaults to ``"clip"`` for OpenCLIP's names, ``"none"`` for WordPiece
        and ``"basic"`` otherwise, so a saved tokenizer of either kind loads back unchanged.

        Raises:
            FileNotFoundError: if ``path`` does not exist.
            ValueError: if the file is not a tokenizer or lacks the SOT/EOT tokens.
        """
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"path: {str(path)!r} is not a file")
        try:
            tok = HFTokenizer.from_file(str(path))
        except Exception as exn:  # tokenizers raises a bare Exception on malformed JSON
            raise ValueError(f"path: {str(path)!r} is not a tokenizers JSON file ({exn})") from exn
        # OpenCLIP names CLIP's special tokens unlike OpenAI's and Hugging Face's files do: a
        # vocabulary with its names is CLIP's as shipped here, cleaned as OpenCLIP cleans
        openclip = sot is None and eot is None and tok.token_to_id(SOT) is None and all(
            tok.token_to_id(name) is not None for name in (CLIP_SOT, CLIP_EOT)
        )
        wordpiece = sot is None and eot is None and not openclip and (
            tok.token_to_id(SOT) is None and type(tok.model).__name__ == "WordPiece"
        )
        if openclip:
            sot, eot = CLIP_SOT, CLIP_EOT
        if wordpiece:
            sot, eot, pad = WORDPIECE_CLS, WORDPIECE_SEP, WORDPIECE_PAD
        if clean is None:
            clean = "clip" if openclip else "none" if wordpiece else "basic"
        return cls(tok, context_length, sot=sot or SOT, eot=eot or EOT, pad=pad, clean=clean)

    def save(self, path: str | Path) -> Path:
        """Write ``tokenizer.json`` to ``path`` (parent folders are created); returns the path."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        self._tok.save(str(path))
        return path

    # -- encoding --------------------------------------------------------------------------
    def encode(self, text: str) -> list[int]:
        """Ids of the cleaned ``text`` without SOT/EOT or padding.

        A literal ``<|endoftext|>`` (or SOT/PAD token string) inside ``text`` is dropped, so
        every encoded row holds exactly one EOT, where the text ends.
        """
        ids = self._tok.encode(CLEANERS[self.clean](text), add_special_tokens=False).ids
        return [i for i in ids if i not in self._framing]

    def __call__(
        self, texts: str | Sequence[str], context_length: int | None = None
    ) -> torch.Tensor:
        """Encode a string or a batch of strings to a LongTensor ``(N, L)``.

        Row ``i`` is ``[sot, t_1 .. t_n, eot, pad ...]`` with ``n <= L - 2`` (longer
        captions are truncated before EOT).

        Args:
            texts: one string (gives ``N = 1``) or a sequence of strings.
            context_length: ``L`` for this call; defaults to the tokenizer's.

        Raises:
            TypeError: if an entry of ``texts`` is not a string.
            ValueError: if ``context_length < 2``.
        """
        if isinstance(texts, str):
            texts = [texts]
        length = self.context_length if context_length is None else int(context_length)
        if length < 2:
            raise ValueError(f"context_length: got {length}, expected >= 2 (SOT and EOT)")
        for i, t in enumerate(texts):
            if not isinstance(t, str):
                raise TypeError(f"texts[{i}]: got {type(t).__name__}, expected str")
        sot, eot, pad = [self.sot_id], [self.eot_id], self.pad_id
        rows = []
        for text in texts:
            ids = self.encode(text)[: length - 2]
            rows.append(sot + ids + eot + [pad] * (length - 2 - len(ids)))
        if not rows:
            return torch.empty((0, length), dtype=torch.long)
        return torch.tensor(rows, dtype=torch.long)

    def decode(self, ids: Sequence[int] | torch.Tensor) -> str:
        """Text of one id row; SOT, EOT and everything after EOT are dropped."""
        if isinstance(ids, torch.Tensor):
            ids = ids.tolist()
        ids = list(ids)
        if ids and ids[0] == self.sot_id:
            ids = ids[1:]
        if self.eot_id in ids:
            ids = ids[: ids.index(self.eot_id)]
        return self._tok.decode(ids, skip_special_tokens=True).strip()

    @property
    def backend(self) -> HFTokenizer:
        """The underlying ``tokenizers.Tokenizer``."""
        return self._tok

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_tok"] = self._tok.to_str()
        return state

    def __setstate__(self, state: dict) -> None:
        state = dict(state)
        state["_tok"] = HFTokenizer.from_str(state["_tok"])
        self.__dict__.update(state)

    def __repr__(self) -> str:
        return (
            f"Tokenizer(vocab_size={self.vocab_size}, context_length={self.context_length}, "
            f"sot_id={self.sot_id}, eot_id={self.eot_id}, pad_id={self.pad_id}, "
            f"clean={self.clean!r})"
        )


def default_tokenizer(context_length: int = 32) -> Tokenizer:
    """The bundled byte-level BPE vocabulary trained on the synthetic captions.

    It was made by [manifold_align.data.synthetic.train_synthetic_tokenizer][manifold_align.data.synthetic.train_synthetic_tokenizer] and encodes
    every word of the synthetic captions as one token; any other text still encodes (byte
    fallback), only less compactly.
    """
    path = resources.files("manifold_align.data").joinpath("assets", DEFAULT_TOKENIZER_FILE)
    with resources.as_file(path) as file:
        return Tokenizer.load(file, context_length)


def clip_tokenizer(context_length: int = 77) -> Tokenizer:
    """OpenAI CLIP's tokenizer, from the vocabulary shipped with the package (no download).

    Rows equal ``open_clip.get_tokenizer("ViT-B-32")(texts, context_length)``: ``[49406,
    t_1 .. t_n, 49407, 0 ...]`` with ``n <= L - 2`` (a longer caption is cut and still ends
    with 49407), after OpenCLIP's cleaning ([manifold_align.data.clip_bpe.clip_clean][manifold_align.data.clip_bpe.clip_clean]).
    One difference: a literal ``<start_of_text>``/``<end_of_text>`` in a caption is dropped
    (OpenCLIP emits the special id), so every row has one end token, where the text ends.

    Args:
        context_length: ``L`` (CLIP's models use 77).

    Raises:
        ValueError: if ``context_length < 2``.
    """
    return Tokenizer(clip_backend(), context_length, sot=CLIP_SOT, eot=CLIP_EOT, clean="clip")


def wordpiece_tokenizer(
    vocab_file: str | Path, context_length: int = 77, *, lowercase: bool = True
) -> Tokenizer:
    """BERT's WordPiece over ``vocab_file``, framed ``[CLS] t_1 .. t_n [SEP] [PAD] ...``.

    Rows equal ``transformers.BertTokenizer(vocab_file)``'s ``[CLS]`` + tokens cut to
    ``L - 2`` + ``[SEP]`` + ``[PAD]`` padding, the input of the paper's released text tower
    (its ``bert_tokenizer.py``), except that a literal ``[CLS]``/``[SEP]``/``[PAD]`` inside a
    caption is dropped. The pad id is ``[PAD]``'s (``0`` if the file has none).

    Args:
        vocab_file: a WordPiece ``vocab.txt`` (one token a line).
        context_length: ``L`` (the release uses 77).
        lowercase: lower-case and strip accents (an uncased vocabulary, as the release's).

    Raises:
        FileNotFoundError: if ``vocab_file`` is not a file.
        ValueError: a malformed vocabulary (see
            [wordpiece_backend][manifold_align.data.wordpiece.wordpiece_backend]) or ``context_length < 2``.
    """
    backend = wordpiece_backend(vocab_file, lowercase=lowercase)
    return Tokenizer(backend, context_length, sot=WORDPIECE_CLS, eot=WORDPIECE_SEP,
                     pad=WORDPIECE_PAD, clean="none")
