"""The shipped CLIP tokenizer equals ``open_clip.get_tokenizer("ViT-B-32")``, token for token.

Runs in ``.venv-peers`` (OpenCLIP imported at the top: a missing peer fails, never skips).
Text is drawn from characters assigned in Python's Unicode database (14.0 on Python 3.11):
OpenCLIP's ``regex`` module may know letters of newer Unicode versions that the regular
expression engine inside ``tokenizers`` does not (docs/data.md, "CLIP's tokenizer").
"""

from __future__ import annotations

import json
import sys
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
_CHARS = st.characters(exclude_categories=("Cs", "Cn"))
_SEPARATORS = st.sampled_from(["", " ", " ", " ", "  ", "\t", "\n", " \u3000 ", "\xa0", "\r\n"])
_WORD = st.one_of(
    st.sampled_from(_ASCII_WORDS), st.sampled_from(TRICKY), st.text(_CHARS, min_size=1, max_size=10)
)
_CAPTION = st.lists(st.tuples(_WORD, _SEPARATORS), max_size=16).map(
    lambda parts: "".join(w + s for w, s in parts)
)
_LONG = st.lists(_WORD, min_size=60, max_size=120).map(" ".join)  # past 77 tokens: truncated
_STRING = st.one_of(st.just(""), st.text(_CHARS, max_size=40), _CAPTION, _CAPTION, _LONG).filter(
    lambda s: not any(name in clip_clean(s) for name in SPECIALS)
)
EXAMPLES, BATCH = 200, 50  # 10,000 strings


def _first_difference(texts: list[str], ours: torch.Tensor, peer: torch.Tensor) -> str:
    i = int((ours != peer).any(dim=1).nonzero()[0])
    return f"{texts[i]!r}:\n ours {ours[i].tolist()}\n peer {peer[i].tolist()}"


@settings(max_examples=EXAMPLES, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(st.lists(_STRING, min_size=BATCH, max_size=BATCH))
def test_equal_to_openclip_on_generated_text(texts):
    ours, peer = OURS(texts), PEER(texts)
    assert ours.shape == peer.shape == (BATCH, 77)
    assert torch.equal(ours, peer), _first_difference(texts, ours, peer)


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
