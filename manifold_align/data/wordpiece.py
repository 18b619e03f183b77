"""BERT's WordPiece as a Hugging Face ``tokenizers`` backend, from a ``vocab.txt`` you bring.

The paper's released text tower reads ids of a BERT-style (ERNIE 2.0 base, English)
WordPiece vocabulary of 30,522 entries: one token a line, the line number its id, with
``[PAD]`` (0 in BERT's files), ``[UNK]``, ``[CLS]`` and ``[SEP]`` among them. Its rows are

$$[\\texttt{[CLS]}, t_1, \\dots, t_n, \\texttt{[SEP]}, \\texttt{[PAD]}, \\dots] \\in
\\mathbb{Z}^{L}, \\qquad n \\le L - 2,$$

which is the framing of [Tokenizer][manifold_align.data.tokenizer.Tokenizer] with ``[CLS]`` as
start and ``[SEP]`` as end ([wordpiece_tokenizer][manifold_align.data.tokenizer.wordpiece_tokenizer]).
The text is split as ``transformers.BertTokenizer`` splits it: BERT's normaliser (control
characters removed, whitespace unified, CJK characters spaced, lower-cased with accents
stripped when ``lowercase``), BERT's pre-tokeniser (whitespace and punctuation), then greedy
longest-match-first WordPiece with the ``##`` continuation prefix and ``[UNK]`` for a word
that cannot be covered (or is longer than 100 characters).

No vocabulary ships with the package: pass the ``vocab.txt`` of the model you use (the
release ships its own, ``ERNIE-BASE-EN-2.0/vocab.txt``, 30,522 lines).
"""

from __future__ import annotations

from pathlib import Path

from tokenizers import Tokenizer as HFTokenizer
from tokenizers import decoders, models, normalizers, pre_tokenizers

__all__ = ["WORDPIECE_CLS", "WORDPIECE_PAD", "WORDPIECE_SEP", "WORDPIECE_UNK", "wordpiece_backend"]

WORDPIECE_CLS = "[CLS]"
WORDPIECE_SEP = "[SEP]"
WORDPIECE_PAD = "[PAD]"
WORDPIECE_UNK = "[UNK]"


def wordpiece_backend(vocab_file: str | Path, *, lowercase: bool = True) -> HFTokenizer:
    """A ``tokenizers.Tokenizer`` that splits text as ``BertTokenizer(vocab_file)`` does.

    Args:
        vocab_file: a WordPiece ``vocab.txt`` (one token a line, ids from 0), holding
            ``[UNK]``, ``[CLS]`` and ``[SEP]``.
        lowercase: lower-case and strip accents first (``bert-base-uncased``, the release).

    Raises:
        FileNotFoundError: if ``vocab_file`` is not a file.
        ValueError: if it is not UTF-8 text, repeats a token, or lacks ``[UNK]``, ``[CLS]``
            or ``[SEP]`` (naming the file and the token).
    """
    path = Path(vocab_file)
    if not path.is_file():
        raise FileNotFoundError(f"vocab_file: {str(path)!r} is not a file")
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as exc:
        raise ValueError(f"vocab_file: {str(path)!r} is not UTF-8 text ({exc.reason})") from None
    vocab: dict[str, int] = {}
    for number, line in enumerate(lines):
        token = line.rstrip("\r")
        if token in vocab:
            raise ValueError(
                f"vocab_file: {str(path)!r} line {number + 1} repeats {token!r} "
                f"(first on line {vocab[token] + 1})"
            )
        vocab[token] = number
    for token in (WORDPIECE_UNK, WORDPIECE_CLS, WORDPIECE_SEP):
        if token not in vocab:
            raise ValueError(f"vocab_file: {str(path)!r} has no {token} token")
    tok = HFTokenizer(models.WordPiece(vocab, unk_token=WORDPIECE_UNK, max_input_chars_per_word=100))
    tok.normalizer = normalizers.BertNormalizer(
        clean_text=True, handle_chinese_chars=True, strip_accents=None, lowercase=lowercase
    )
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.decoder = decoders.WordPiece(prefix="##")
    # the framing tokens are never split, and an occurrence inside a caption is dropped
    tok.add_special_tokens([t for t in (WORDPIECE_CLS, WORDPIECE_SEP, WORDPIECE_PAD) if t in vocab])
    return tok
