"""WordPiece (the released text tower's tokenizer): framing, splitting, save/load, config selection.

tests/peers/test_wordpiece_peer.py compares the rows with ``transformers.BertTokenizer``.
"""

import pytest
import torch

from manifold_align.config import ConfigError, load_config
from manifold_align.data.tokenizer import Tokenizer, wordpiece_tokenizer
from manifold_align.train import RunConfig, load_trained, train
from manifold_align.train.run import _load_tokenizer

WORDS = ["a", "red", "blue", "green", "big", "small", "circle", "square", "triangle", "on",
         "the", "left", "right", "top", "of", "photo", "shape", "in", "middle", "bottom"]
VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS, "##s", "##ish", ".", ",", "cafe"]


@pytest.fixture
def vocab_file(tmp_path):
    path = tmp_path / "vocab.txt"
    path.write_text("\n".join(VOCAB) + "\n", encoding="utf-8")
    return path


def ids(*tokens: str) -> list[int]:
    return [VOCAB.index(t) for t in tokens]


def test_rows_are_cls_words_sep_pad(vocab_file):
    tok = wordpiece_tokenizer(vocab_file, context_length=10)
    assert (tok.sot_id, tok.eot_id, tok.pad_id, tok.vocab_size) == (2, 3, 0, len(VOCAB))
    row = tok("A  Red circles, on the LEFT")[0].tolist()
    assert row == ids("[CLS]", "a", "red", "circle", "##s", ",", "on", "the", "left", "[SEP]")
    # words not covered become [UNK]; accents are stripped (uncased); padding is [PAD]
    assert tok("Café xyz")[0].tolist() == ids("[CLS]", "cafe", "[UNK]", "[SEP]") + [0] * 6
    # longer captions are cut before [SEP]; a literal [SEP] inside a caption is dropped
    assert tok("red " * 20)[0].tolist() == ids("[CLS]", *["red"] * 8, "[SEP]")
    assert tok("red [SEP] blue")[0].tolist()[:4] == ids("[CLS]", "red", "blue", "[SEP]")
    assert tok.decode(tok("big squares")[0]) == "big squares"


def test_saved_wordpiece_loads_back_unchanged(vocab_file, tmp_path):
    tok = wordpiece_tokenizer(vocab_file, context_length=16)
    loaded = Tokenizer.load(tok.save(tmp_path / "tokenizer.json"), 16)
    assert (loaded.sot, loaded.eot, loaded.pad, loaded.clean) == ("[CLS]", "[SEP]", "[PAD]", "none")
    text = ["a big red circle on the left.", "Green triangles in the middle"]
    assert torch.equal(loaded(text), tok(text))


def test_bad_vocabularies_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"vocab_file: .* is not a file"):
        wordpiece_tokenizer(tmp_path / "missing.txt")
    path = tmp_path / "vocab.txt"
    path.write_text("[PAD]\n[UNK]\n[SEP]\nred\n")
    with pytest.raises(ValueError, match=r"has no \[CLS\] token"):
        wordpiece_tokenizer(path)
    path.write_text("[UNK]\n[CLS]\n[SEP]\nred\nred\n")
    with pytest.raises(ValueError, match=r"line 5 repeats 'red' \(first on line 4\)"):
        wordpiece_tokenizer(path)
    path.write_bytes(b"[UNK]\n\xff\n")
    with pytest.raises(ValueError, match="not UTF-8"):
        wordpiece_tokenizer(path)


def test_config_selects_wordpiece(vocab_file, tmp_path):
    config = load_config(RunConfig, None, [f"data.tokenizer=wordpiece:{vocab_file}"])
    tok = _load_tokenizer(config, 20)
    assert tok.sot == "[CLS]" and tok.context_length == 20
    missing = load_config(RunConfig, None, [f"data.tokenizer=wordpiece:{tmp_path / 'nope.txt'}"])
    with pytest.raises(ConfigError, match=r"data.tokenizer: vocab_file: .*nope.txt"):
        _load_tokenizer(missing, 20)
    with pytest.raises(ConfigError, match=r"data.tokenizer: expected .*'wordpiece:<vocab.txt>'"):
        load_config(RunConfig, None, ["data.tokenizer='wordpiece:'"])


def test_release_architecture_trains_and_reloads_with_wordpiece(vocab_file, tmp_path):
    """The sphere release config at toy width, on the synthetic data, two steps, reloaded."""
    small = {"vision_width": 32, "vision_layers": 1, "vision_heads": 2, "patch_size": 16,
             "image_size": 64, "text_width": 32, "text_layers": 1, "text_heads": 2,
             "context_length": 16, "token_dim": 16}
    overrides = [f"model.overrides.{k}={v}" for k, v in small.items()] + [
        "model.name=ViT-B-16-sphere-release", f"data.tokenizer=wordpiece:{vocab_file}",
        "data.batch_size=4", "data.synthetic.size=16", "train.steps=2", "train.device=cpu",
        "train.progress=false", "eval.zeroshot_samples=0", "eval.retrieval_samples=0",
    ]
    result = train(load_config(RunConfig, None, overrides), tmp_path / "run")
    model, tok, _ = load_trained(tmp_path / "run")
    assert tok.sot == "[CLS]" and model.config.vocab_size == len(VOCAB)
    assert model.config.text_mask == "padding" and model.text.ln_embedding is not None
    with torch.no_grad():
        torch.testing.assert_close(model.encode_text(tok(["a red circle"])),
                                   result.model.encode_text(tok(["a red circle"])))
