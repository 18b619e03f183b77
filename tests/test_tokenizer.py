"""Byte-level BPE tokenizer: framing (SOT, text, EOT, pad), training, save/load, CLIP's own."""

from __future__ import annotations

import hashlib
import json
import pickle
from importlib import resources
from pathlib import Path

import ftfy
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from tokenizers import Tokenizer as HFTokenizer
from tokenizers import decoders, models, pre_tokenizers, processors, trainers

from manifold_align.data.clip_bpe import CLIP_VOCAB_FILE, byte_symbols, clip_clean
from manifold_align.data.synthetic import (
    ZERO_SHOT_TASKS,
    SyntheticCaptions,
    train_synthetic_tokenizer,
)
from manifold_align.data.tokenizer import (
    EOT,
    PAD,
    SOT,
    Tokenizer,
    basic_clean,
    clip_tokenizer,
    default_tokenizer,
)

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


# -- OpenAI CLIP's tokenizer, shipped (tests/peers/test_clip_tokenizer.py compares it with OpenCLIP)


@pytest.fixture(scope="module")
def clip() -> Tokenizer:
    return clip_tokenizer()


# ids as open_clip.get_tokenizer("ViT-B-32") gives them (open_clip_torch 3.3.0)
CLIP_KNOWN = [
    ("a diagram", [320, 22697]),
    ("a photo of a dog", [320, 1125, 539, 320, 1929]),
    ("It’s a CAT &amp;amp; a dog!!", [585, 568, 320, 2368, 261, 320, 1929, 748]),  # ftfy, HTML
    ("ﬁsh   and\tchips\n", [2759, 537, 8855]),  # ligature, whitespace runs
    ("cafÃ© naïve 2024", [15304, 1097, 35689, 563, 273, 271, 273, 275]),  # mojibake, digits
    ("", []),
]


@pytest.mark.parametrize(("text", "ids"), CLIP_KNOWN, ids=[t for t, _ in CLIP_KNOWN])
def test_clip_tokenizer_gives_clips_ids(clip, text, ids):
    assert clip.encode(text) == ids
    row = clip([text])[0]
    assert row.tolist() == [49406, *ids, 49407] + [0] * (77 - len(ids) - 2)


def test_clip_tokenizer_special_ids_and_vocabulary(clip):
    assert (clip.vocab_size, clip.sot_id, clip.eot_id, clip.pad_id) == (49408, 49406, 49407, 0)
    assert clip.context_length == 77 and clip.clean == "clip"
    assert clip.backend.id_to_token(49406) == "<start_of_text>"
    assert clip.backend.id_to_token(49407) == "<end_of_text>"
    assert clip.backend.id_to_token(0) == "!" and clip.backend.id_to_token(256) == "!</w>"
    assert clip.decode(clip(["A photo of a DOG"])[0]) == "a photo of a dog"
    assert clip_tokenizer(16)(["a dog"]).shape == (1, 16)


def test_clip_truncation_keeps_the_end_token(clip):
    long = " ".join(["a photo of a dog"] * 40)
    ids = clip.encode(long)
    assert len(ids) == 200
    for length in (77, 10, 2):
        row = clip([long], context_length=length)[0]
        assert row.tolist() == [49406, *ids[: length - 2], 49407]


def test_clip_literal_special_tokens_are_dropped(clip):
    """OpenCLIP would emit 49407 mid-row here; ours keeps one end token, where the text ends."""
    row = clip(["a <end_of_text> b <START_OF_TEXT>"])[0]
    assert row[:4].tolist() == [49406, 320, 321, 49407]
    assert (row == 49407).sum() == 1 and (row == 49406).sum() == 1


def test_clip_context_length_errors():
    with pytest.raises(ValueError, match="context_length"):
        clip_tokenizer(1)
    with pytest.raises(ValueError, match="context_length"):
        clip_tokenizer()(["a"], context_length=1)
    with pytest.raises(TypeError, match=r"texts\[0\]"):
        clip_tokenizer()([None])


def test_clip_tokenizer_saves_loads_and_pickles_unchanged(clip, tmp_path):
    texts = ["It’s a CAT &amp; a dog", "ﬁsh and chips", "a photo of a dog"]
    again = Tokenizer.load(clip.save(tmp_path / "tokenizer.json"))
    assert again.clean == "clip" and (again.sot_id, again.eot_id) == (49406, 49407)
    assert torch.equal(again(texts), clip(texts))
    assert torch.equal(pickle.loads(pickle.dumps(clip))(texts), clip(texts))
    # an explicit choice still wins over the names
    assert Tokenizer.load(tmp_path / "tokenizer.json", clean="basic").clean == "basic"
    with pytest.raises(ValueError, match="clean"):
        Tokenizer(clip.backend, clean="nfkc")


def test_clip_vocabulary_file_is_openais_unchanged_with_its_notice():
    assets = resources.files("manifold_align.data").joinpath("assets")
    digest = hashlib.sha256(assets.joinpath(CLIP_VOCAB_FILE).read_bytes()).hexdigest()
    assert digest == "924691ac288e54409236115652ad4aa250f48203de50a9e4722a6ecd48d6804a"
    notice = assets.joinpath("CLIP_BPE_LICENSE.txt").read_text()
    assert "MIT License" in notice and "Copyright (c) 2021 OpenAI" in notice and digest in notice
    assert len(byte_symbols()) == len(set(byte_symbols())) == 256
    assert set(byte_symbols()) == set(pre_tokenizers.ByteLevel.alphabet())


def test_clip_clean_is_openclips():
    assert clip_clean("  It’s\u00a0a  CAT &amp;amp; ﬁne\x1c ") == "it's a cat & fine"
    with pytest.raises(TypeError, match="text"):
        clip_clean(b"bytes")


def test_data_tokenizer_clip_selects_it_and_full_scale_configs_use_it():
    from manifold_align.config import load_config
    from manifold_align.train.config import RunConfig
    from manifold_align.train.run import _load_tokenizer

    root = Path(__file__).parents[1] / "manifold_align" / "configs" / "train"
    for name in ("ViT-B-16-sphere", "ViT-B-16-oblique"):
        assert load_config(RunConfig, root / f"{name}.yaml").data.tokenizer == "clip"
    tok = _load_tokenizer(load_config(RunConfig, None, ["data.tokenizer=clip"]), 77)
    assert (tok.vocab_size, tok.eot_id, tok.clean) == (49408, 49407, "clip")


@given(st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E, exclude_characters="&")))
def test_ftfy_leaves_printable_ascii_without_ampersand_alone(text):
    """clip_clean skips ftfy on such text; this is the claim that makes the shortcut exact."""
    assert ftfy.fix_text(text) == text
    assert clip_clean(text) == " ".join(text.split()).lower()


def test_a_run_with_the_clip_tokenizer_reloads_it(tmp_path):
    """The run keeps CLIP's tokenizer.json; load_trained rebuilds the same tokenizer and model."""
    from manifold_align.config import load_config
    from manifold_align.train.config import RunConfig
    from manifold_align.train.run import load_trained, train

    config = load_config(RunConfig, None, [
        "model.overrides={vision_width: 32, vision_layers: 1, vision_heads: 2, patch_size: 8,"
        " image_size: 16, text_width: 32, text_layers: 1, text_heads: 2, token_dim: 16,"
        " context_length: 16}",
        "data.tokenizer=clip", "data.synthetic.size=32", "data.batch_size=8", "train.steps=2",
        "train.progress=false", "train.ckpt_every=2", "eval.zeroshot_samples=0",
        "eval.retrieval_samples=0",
    ])
    result = train(config, tmp_path / "run")
    assert result.model.config.vocab_size == 49408 and result.model.config.eot_id == 49407
    model, tok, _ = load_trained(tmp_path / "run")
    assert (tok.clean, tok.sot_id, tok.eot_id, tok.context_length) == ("clip", 49406, 49407, 16)
    texts = ["It’s a photo of a DOG &amp; a cat", "a small red triangle"]
    assert torch.equal(tok(texts), clip_tokenizer(16)(texts))
    assert model.config == result.model.config
