"""Our WordPiece rows equal transformers.BertTokenizer's, framed as the paper's release frames them."""

import random

import pytest
from transformers import BertTokenizer

from manifold_align.data.tokenizer import wordpiece_tokenizer

WORDS = ["a", "photo", "of", "the", "dog", "cat", "red", "blue", "big", "small", "on", "in",
         "un", "##able", "##s", "##ing", "play", "run", "café", "naive", "über", "東", "京",
         "hello", "world", "!", ".", ",", "'", "-", "(", ")", "1", "2", "##0"]
VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS]
TRICKY = ["A Photo of the DOG!", "Café, naïve Über-dogs (2 of them)", "東京 cats playing",
          "unable runs\tand\n\nplays", "", "   ", "x" * 120, "hello" * 30, "a\u0000b \u200bc",
          "it's a 'cat' 1200", "[CLS] dog [SEP] cat [PAD]"]


@pytest.fixture(scope="module")
def vocab_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("wp") / "vocab.txt"
    path.write_text("\n".join(VOCAB) + "\n", encoding="utf-8")
    return path


def release_rows(bert: BertTokenizer, text: str, length: int) -> list[int]:
    """The release's bert_tokenizer.py framing: [CLS] + tokens[: L - 2] + [SEP] + [PAD]s."""
    pieces = [t for t in bert.tokenize(text) if t not in ("[CLS]", "[SEP]", "[PAD]")][: length - 2]
    framed = ["[CLS]", *pieces, "[SEP]"] + ["[PAD]"] * (length - 2 - len(pieces))
    return bert.convert_tokens_to_ids(framed)


@pytest.mark.parametrize("length", [8, 77])
def test_rows_equal_bert_tokenizers(vocab_file, length):
    ours = wordpiece_tokenizer(vocab_file, length)
    bert = BertTokenizer(str(vocab_file), do_lower_case=True)
    rng = random.Random(0)
    texts = TRICKY + [" ".join(rng.choice([*WORDS, "zebra", "CAT", "Dogs"]).replace("##", "")
                               for _ in range(rng.randint(1, 30))) for _ in range(300)]
    rows = ours(texts).tolist()
    for text, row in zip(texts, rows, strict=True):
        assert row == release_rows(bert, text, length), text
