"""OpenAI CLIP's byte-level BPE as a Hugging Face ``tokenizers`` backend, built offline.

The vocabulary is the one OpenAI released with CLIP (MIT license) and OpenCLIP ships as
``bpe_simple_vocab_16e6.txt.gz``; this package carries the same file, byte for byte, under
``manifold_align/data/assets/`` with its notice (``CLIP_BPE_LICENSE.txt``). Its ids:

$$\\underbrace{0..255}_{\\text{bytes}}\\;\\underbrace{256..511}_{\\text{bytes + </w>}}\\;
\\underbrace{512..49405}_{48{,}894\\ \\text{merges}}\\;49406 = \\texttt{<start\\_of\\_text>},\\;
49407 = \\texttt{<end\\_of\\_text>}.$$

A caption is first cleaned as OpenCLIP cleans it ([clip_clean][manifold_align.data.clip_bpe.clip_clean]), then split with CLIP's
pattern, each piece mapped to byte symbols and merged by BPE with the ``</w>`` end-of-word
suffix ([clip_backend][manifold_align.data.clip_bpe.clip_backend]). [manifold_align.data.tokenizer.clip_tokenizer][manifold_align.data.tokenizer.clip_tokenizer] frames the
result (start, text, end, zero padding).

[clip_clean][manifold_align.data.clip_bpe.clip_clean] needs ``ftfy`` (the ``train`` extra), as OpenCLIP does; it is imported on
first use.
"""

from __future__ import annotations

import gzip
import html
from importlib import resources

from tokenizers import Regex, decoders, models, pre_tokenizers
from tokenizers import Tokenizer as HFTokenizer

__all__ = [
    "CLIP_EOT",
    "CLIP_MERGES",
    "CLIP_PATTERN",
    "CLIP_SOT",
    "CLIP_VOCAB_FILE",
    "CLIP_VOCAB_SIZE",
    "byte_symbols",
    "clip_backend",
    "clip_clean",
]

CLIP_SOT = "<start_of_text>"
CLIP_EOT = "<end_of_text>"
CLIP_VOCAB_FILE = "bpe_simple_vocab_16e6.txt.gz"
"""OpenAI's merges file (MIT license), under ``manifold_align/data/assets/``."""
CLIP_MERGES = 49152 - 256 - 2
"""How many merges of the file CLIP uses (its vocabulary is 49,152 before the two specials)."""
CLIP_VOCAB_SIZE = 2 * 256 + CLIP_MERGES + 2
"""49,408: 256 byte symbols, the same with ``</w>``, the merges, start and end."""

CLIP_PATTERN = r"""'[sſ]|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+"""
"""CLIP's pre-tokenizer: contractions, letter runs, single digits, other non-space runs.

OpenCLIP compiles it case-insensitively; on lower-cased text the only character that this
changes is the long s (``ſ``, which folds to ``s``), written out here instead."""


def clip_clean(text: str) -> str:
    """OpenCLIP's cleaning of a caption before BPE, step for step.

    ``ftfy.fix_text`` (mojibake, curly quotes, ligatures, widths, NFC), HTML unescaped twice,
    runs of whitespace (``str.isspace``) collapsed to one space, stripped, lower-cased.

    Raises:
        TypeError: if ``text`` is not a string.
        ImportError: if ``ftfy`` is not installed.
    """
    if not isinstance(text, str):
        raise TypeError(f"text: got {type(text).__name__}, expected str")
    if not (text.isascii() and text.isprintable() and "&" not in text):
        try:
            import ftfy
        except ImportError as exc:
            raise ImportError(
                "clip_clean needs ftfy, as OpenCLIP does: pip install 'manifold-align[train]'"
            ) from exc

        # ftfy leaves printable ASCII without "&" as it is (none of its fixes has anything to
        # act on: no entity, control, escape, line break or non-ASCII character), so most
        # captions skip its cost; tests/test_tokenizer.py checks the claim
        text = ftfy.fix_text(text)
    text = html.unescape(html.unescape(text))
    return " ".join(text.split()).lower()


def byte_symbols() -> list[str]:
    """The 256 byte symbols in CLIP's id order: ``byte_symbols()[b]`` is NOT byte ``b``.

    Printable Latin-1 bytes (``!``..``~``, ``¡``..``¬``, ``®``..``ÿ``) stand for themselves
    and come first; the other 68 bytes ``b`` (space, controls) follow as ``chr(256 + n)``, ``n``
    counting them in byte order. This is the alphabet of ``pre_tokenizers.ByteLevel``.
    """
    printable = [*range(0x21, 0x7F), *range(0xA1, 0xAD), *range(0xAE, 0x100)]
    others = [b for b in range(256) if b not in set(printable)]
    return [chr(b) for b in printable] + [chr(256 + n) for n in range(len(others))]


def _read_merges() -> list[tuple[str, str]]:
    path = resources.files("manifold_align.data").joinpath("assets", CLIP_VOCAB_FILE)
    lines = gzip.decompress(path.read_bytes()).decode("utf-8").split("\n")
    merges = [tuple(line.split()) for line in lines[1 : 1 + CLIP_MERGES]]  # line 0: a header
    if len(merges) != CLIP_MERGES or any(len(m) != 2 for m in merges):
        raise ValueError(f"{CLIP_VOCAB_FILE}: expected {CLIP_MERGES} merge pairs after the header")
    return merges  # type: ignore[return-value]


def clip_backend() -> HFTokenizer:
    """A fresh ``tokenizers.Tokenizer`` equal to CLIP's BPE on cleaned text.

    Pre-tokenizer: [CLIP_PATTERN][manifold_align.data.clip_bpe.CLIP_PATTERN] (matches kept, the rest dropped), then the byte-level
    mapping without its own regex; model: BPE over [CLIP_VOCAB_SIZE][manifold_align.data.clip_bpe.CLIP_VOCAB_SIZE] ids with the
    ``</w>`` suffix; decoder: ``</w>`` back to a space, then bytes back to text. The start and
    end tokens are special tokens (a literal ``<end_of_text>`` in a text is found as one).
    No normaliser: [clip_clean][manifold_align.data.clip_bpe.clip_clean] runs in Python first.

    Raises:
        ValueError: if the bundled merges file is damaged.
    """
    symbols = byte_symbols()
    merges = _read_merges()
    tokens = symbols + [s + "</w>" for s in symbols] + ["".join(m) for m in merges]
    tokens += [CLIP_SOT, CLIP_EOT]
    vocab = {token: i for i, token in enumerate(tokens)}
    if len(vocab) != CLIP_VOCAB_SIZE:
        raise ValueError(f"{CLIP_VOCAB_FILE}: {len(vocab)} distinct tokens, expected {CLIP_VOCAB_SIZE}")
    tok = HFTokenizer(models.BPE(vocab, merges, end_of_word_suffix="</w>"))
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(CLIP_PATTERN), behavior="removed", invert=True),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    space = chr(256 + 0x20)  # the symbol of byte " ": bytes 0..0x20 are the first non-printables
    tok.decoder = decoders.Sequence([decoders.Replace("</w>", space), decoders.ByteLevel()])
    tok.add_special_tokens([CLIP_SOT, CLIP_EOT])
    return tok
