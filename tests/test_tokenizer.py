"""Byte-level BPE tokenizer: framing (SOT, text, EOT, pad), training, save/load, CLIP-style files."""

from __future__ import annotations

import json
import pickle

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from tokenizers import Tokenizer as HFTokenizer
from tokenizers import decoders, models, pre_tokenizers, processors, trainers

from manifold_align.data.synthetic import (
    ZERO_SHOT_TASKS,
    SyntheticCaptions,
    train_synthetic_tokenizer,
)
from manifold_align.data.tokenizer import EOT, PAD, SOT, Tokenizer, basic_clean, default_tokenizer

CORPUS = [
    "a small red triangle left of a large blue circle",
    "a photo of a green star on the left",
    "A dog &amp; a cat   sitting\ton a mat",
    "an orange diamond at the top",
] * 20


@pytest.fixture(scope="module")
def tok() -> Tokenizer:
    return Tokenizer.train(CORPUS, vocab_size=300, context_length=16)


def test_trained_vocabulary_has_the_special_tokens_first(tok):
    assert (tok.sot_id, tok.eot_id, tok.pad_id) == (0, 1, 2)
    assert 259 < tok.vocab_size <= 300
    assert tok.backend.id_to_token(tok.eot_id) == EOT


def test_rows_are_sot_text_eot_then_padding(tok):
    texts = ["a small red triangle", "", "a dog & a cat"]
    rows = tok(texts)
    assert rows.dtype == torch.long and rows.shape == (3, 16)
    for text, row in zip(texts, rows):
        ids = tok.encode(text)
        n = len(ids)
        assert row[0] == tok.sot_id
        assert row[1 : n + 1].tolist() == ids
        assert row[n + 1] == tok.eot_id
        assert (row[n + 2 :] == tok.pad_id).all()
        assert tok.decode(row) == basic_clean(text)
    assert tok("one string").shape == (1, 16)
    assert tok(["x"], context_length=5).shape == (1, 5)


def test_long_captions_are_truncated_keeping_eot(tok):
    long = " ".join(["purple hexagon"] * 40)
    row = tok([long])[0]
    assert row[0] == tok.sot_id and row[-1] == tok.eot_id
    assert (row == tok.eot_id).sum() == 1
    assert row[1:-1].tolist() == tok.encode(long)[:14]


@given(st.text(max_size=60))
def test_any_text_gives_exactly_one_eot_where_the_text_ends(text):
    tok = _shared()
    row = tok([text + " <|endoftext|> tail"])[0]
    n = min(len(tok.encode(text + " <|endoftext|> tail")), tok.context_length - 2)
    assert row[0] == tok.sot_id
    assert (row == tok.eot_id).nonzero().flatten().tolist() == [n + 1]
    assert (row[n + 2 :] == tok.pad_id).all()


_CACHE: dict[str, Tokenizer] = {}


def _shared() -> Tokenizer:
    if "tok" not in _CACHE:
        _CACHE["tok"] = Tokenizer.train(CORPUS, vocab_size=300, context_length=16)
    return _CACHE["tok"]


def test_basic_clean_matches_clip():
    assert basic_clean("  A &amp;amp; B\n\t C  ") == "a & b c"
    with pytest.raises(TypeError, match="text"):
        basic_clean(3)


def test_save_load_and_pickle_round_trip(tok, tmp_path):
    path = tok.save(tmp_path / "sub" / "tokenizer.json")
    again = Tokenizer.load(path, context_length=16)
    texts = ["a photo of a green star on the left", "unseen WORDS still encode!"]
    assert torch.equal(tok(texts), again(texts))
    assert (again.sot_id, again.eot_id, again.pad_id, again.vocab_size) == (
        tok.sot_id,
        tok.eot_id,
        tok.pad_id,
        tok.vocab_size,
    )
    clone = pickle.loads(pickle.dumps(tok))
    assert torch.equal(clone(texts), tok(texts))
    # the normaliser travels inside tokenizer.json
    assert "Lowercase" in json.dumps(json.loads(path.read_text())["normalizer"])


def test_a_clip_style_tokenizer_json_loads(tmp_path):
    """CLIP's layout: end-of-word suffix, specials at the end of the vocabulary, a post-processor
    that adds SOT/EOT, no pad token."""
    hf = HFTokenizer(models.BPE(end_of_word_suffix="</w>"))
    hf.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    hf.decoder = decoders.ByteLevel()
    hf.train_from_iterator(
        CORPUS, trainers.BpeTrainer(vocab_size=300, end_of_word_suffix="</w>", show_progress=False)
    )
    hf.add_special_tokens([SOT, EOT])
    sot, eot = hf.token_to_id(SOT), hf.token_to_id(EOT)
    hf.post_processor = processors.TemplateProcessing(
        single=f"{SOT} $A {EOT}", special_tokens=[(SOT, sot), (EOT, eot)]
    )
    path = tmp_path / "clip_tokenizer.json"
    hf.save(str(path))
    tok = Tokenizer.load(path, context_length=12)
    assert (tok.sot_id, tok.eot_id) == (sot, eot) == (tok.vocab_size - 2, tok.vocab_size - 1)
    assert tok.pad_id == 0
    row = tok(["A green star"])[0]
    body = hf.encode("a green star", add_special_tokens=False).ids
    assert row.tolist() == [sot, *body, eot] + [0] * (12 - len(body) - 2)
    # EOT has the largest id, so CLIP's argmax convention finds it too
    assert int(row.argmax()) == len(body) + 1


def test_bad_tokenizer_inputs(tok, tmp_path):
    with pytest.raises(ValueError, match="vocab_size"):
        Tokenizer.train(CORPUS, vocab_size=100)
    with pytest.raises(ValueError, match="context_length"):
        Tokenizer(tok.backend, context_length=1)
    with pytest.raises(ValueError, match="context_length"):
        tok(["a"], context_length=1)
    with pytest.raises(TypeError, match=r"texts\[1\]"):
        tok(["a", 3])
    with pytest.raises(ValueError, match="sot"):
        Tokenizer(tok.backend, sot="<start>")
    with pytest.raises(FileNotFoundError, match="path"):
        Tokenizer.load(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ValueError, match="not a tokenizers JSON"):
        Tokenizer.load(bad)
    with pytest.raises(TypeError, match="tokenizer"):
        Tokenizer("tokenizer.json")


def test_bundled_tokenizer_is_the_trained_synthetic_vocabulary():
    bundled = default_tokenizer()
    assert bundled.context_length == 32 and (bundled.sot_id, bundled.eot_id, bundled.pad_id) == (
        0,
        1,
        2,
    )
    assert bundled.backend.token_to_id(PAD) == 2
    # every word of the synthetic captions and prompts is one token
    ds = SyntheticCaptions("train", 300, seed=11, noise=0.0)
    words = {w for c in ds.captions() for w in c.split()}
    words |= {
        w
        for task in ZERO_SHOT_TASKS.values()
        for row in task.prompts()
        for p in row
        for w in p.split()
    }
    for word in words:
        assert len(bundled.encode("a " + word)) == 2, word
    longest = max(ds.captions(), key=len)
    assert (bundled([longest])[0] == bundled.eot_id).nonzero().item() < 31  # never truncated
    # the asset is exactly what the code trains (not a hand-edited file)
    fresh = train_synthetic_tokenizer()
    assert fresh.backend.get_vocab() == bundled.backend.get_vocab()
