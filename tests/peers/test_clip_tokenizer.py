"""The shipped CLIP tokenizer equals ``open_clip.get_tokenizer("ViT-B-32")``, token for token.

Runs in ``.venv-peers`` (OpenCLIP imported at the top: a missing peer fails, never skips).
Text is drawn from characters assigned in Python's Unicode database (14.0 on Python 3.11):
OpenCLIP's ``regex`` module may know letters of newer Unicode versions that the regular
expression engine inside ``tokenizers`` does not (docs/data.md, "CLIP's tokenizer").
"""

from __future__ import annotations

import json
import random
import sys
import unicodedata
from pathlib import Path

import open_clip
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from manifold_align.data import SyntheticCaptions
from manifold_align.data.clip_bpe import clip_clean
from manifold_align.data.tokenizer import clip_tokenizer

PEER = open_clip.get_tokenizer("ViT-B-32")
OURS = clip_tokenizer()
SPECIALS = ("<start_of_text>", "<end_of_text>")

# pieces OpenCLIP's cleaning and pattern treat specially, mixed into generated captions
TRICKY = [
    "&amp;", "&amp;amp;", "&#39;", "&#x27;", "&quot;", "&lt;b&gt;", "&nbsp;", "&eacute;",
    "&EACUTE;", "&notanentity;", "AT&T", "&", "it's", "IT'S", "we’re", "they‘ll", "'ſ", "ſ",
    "'d", "'S", "don't", "café", "cafe\u0301", "naïve", "Ångström", "İstanbul", "straße", "ΣΑΣ",
    "🐶", "👍🏽", "👨\u200d👩\u200d👧", "❤️", "🇫🇷", "cafÃ©", "â€™", "Ã©tÃ©", "ﬁsh", "ﬂour",
    "ＡＢＣ１２３", "2024", "3.14", "١٢٣", "½", "①", "x²", "!!!", "...", "--", "—", "«»", "猫",
    "東京タワー", "한국어", "ไทย", "עברית", "العربية", "\u200b", "\ufeff", "\x00", "\x1b[31m",
    "\x7f", "\x85", "\x9c", "\u2028", "\r\n", "\x1c", "\u3000", "\xa0", "a\u0308", "photo",
]
_ASCII_WORDS = ["a", "photo", "of", "the", "dog", "cat", "on", "grass", "red", "Car", "NEW"]
_SEPARATORS = ["", " ", " ", " ", "  ", "\t", "\n", " \u3000 ", "\xa0", "\r\n"]
# characters assigned in Python's Unicode database, by range: ASCII (controls too), the
# Latin blocks, the rest of the BMP, the astral planes
_ASSIGNED = [
    [chr(c) for c in range(lo, hi) if unicodedata.category(chr(c)) not in ("Cn", "Cs")]
    for lo, hi in ((0, 0x80), (0x80, 0x250), (0x250, 0x10000), (0x10000, 0x110000))
]
BATCHES, BATCH = 200, 50  # 10,000 strings


def _chars(rng: random.Random, n: int) -> str:
    pools = rng.choices(_ASSIGNED, weights=(4, 2, 3, 1), k=n)
    return "".join(rng.choice(pool) for pool in pools)


def _text(rng: random.Random) -> str:
    """One string: empty, random characters, a caption of words and tricky pieces, or one
    so long that it is truncated."""
    kind = rng.random()
    if kind < 0.05:
        return ""
    if kind < 0.25:
        return _chars(rng, rng.randint(1, 40))
    parts = []
    for _ in range(rng.randint(60, 120) if kind > 0.95 else rng.randint(1, 16)):
        pick = rng.random()
        word = (rng.choice(_ASCII_WORDS) if pick < 0.4 else rng.choice(TRICKY) if pick < 0.7
                else _chars(rng, rng.randint(1, 10)))
        parts.append(word + rng.choice(_SEPARATORS))
    return "".join(parts)


def _first_difference(texts: list[str], ours: torch.Tensor, peer: torch.Tensor) -> str:
    i = int((ours != peer).any(dim=1).nonzero()[0])
    return f"{texts[i]!r}:\n ours {ours[i].tolist()}\n peer {peer[i].tolist()}"


@settings(max_examples=BATCHES, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(0, 2**32 - 1))
def test_equal_to_openclip_on_10000_generated_strings(seed):
    """Batches of 50 strings from a seeded generator (hypothesis picks the seeds; drawing
    each character through hypothesis would cost ten times the tokenizing)."""
    rng = random.Random(seed)
    texts = [_text(rng) for _ in range(BATCH)]
    texts = [t for t in texts if not any(name in clip_clean(t) for name in SPECIALS)]
    ours, peer = OURS(texts), PEER(texts)
    assert ours.shape == peer.shape == (len(texts), 77)
    assert torch.equal(ours, peer), _first_difference(texts, ours, peer)


_WORD = st.one_of(
    st.sampled_from(_ASCII_WORDS),
    st.sampled_from(TRICKY),
    st.text(st.characters(exclude_categories=("Cs", "Cn")), min_size=1, max_size=10),
)
_CAPTION = st.lists(st.tuples(_WORD, st.sampled_from(_SEPARATORS)), max_size=12).map(
    lambda parts: "".join(w + s for w, s in parts)
)


@settings(max_examples=300, deadline=None, derandomize=True)
@given(_CAPTION.filter(lambda s: not any(name in clip_clean(s) for name in SPECIALS)))
def test_equal_to_openclip_on_hypothesis_captions(text):
    """Fewer strings, drawn by hypothesis itself, so that a difference shrinks to a short one."""
    assert OURS([text]).tolist() == PEER([text]).tolist()


@pytest.mark.parametrize("text", [*TRICKY, "", " ", "A Photo Of A DOG", "x" * 500])
def test_equal_to_openclip_on_tricky_text(text):
    for length in (77, 16, 5, 2):
        assert OURS([text], length).tolist() == PEER([text], length).tolist(), (text, length)
    assert clip_clean(text) == open_clip.tokenizer._clean_lower(text)
    ids = OURS.encode(text)
    if len(ids) <= 75:  # a whole caption decodes as OpenCLIP decodes it (one space a word)
        assert OURS.decode(OURS([text])[0]) == PEER.decode(ids).strip()


def test_equal_to_openclip_on_synthetic_captions():
    texts = list(SyntheticCaptions("train", 2000, seed=3, noise=0.2).captions())
    assert torch.equal(OURS(texts), PEER(texts))


def test_a_literal_special_token_is_the_one_difference():
    """OpenCLIP emits 49407 in the middle of this row and pools the text there; ours drops
    the literal and keeps one end token, where the text ends."""
    text = "a <end_of_text> b"
    assert 49407 in PEER([text])[0, 1:3].tolist()
    assert torch.equal(OURS([text]), PEER(["a b"]))
    assert OURS.encode(text) == OURS.encode("a b") == [320, 321]



def test_benchmark_quick_run_compares_equal_rows(tmp_path):
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
    import bench_tokenizer

    out = bench_tokenizer.main(["--quick", "--json", str(tmp_path / "tokenizer.json")])
    assert json.loads((tmp_path / "tokenizer.json").read_text()) == json.loads(json.dumps(out))
    assert [r["corpus"] for r in out["results"]] == ["synthetic", "web-like"]
    for r in out["results"]:
        assert r["captions"] == 2000 and r["rows_differing"] == 0
        assert r["ratio_time"] > 0 and r["ours"]["captions_per_s"] > 0
