"""Images, captions and tokens: the data layer (imports nothing of ours but ``config``).

* [synthetic][manifold_align.data.synthetic]: procedurally generated captioned shapes, the
  bundled default data (no download), with caption noise, zero-shot tasks and a retrieval
  split.
* [webdataset][manifold_align.data.webdataset]: img2dataset-style tar shards (read and write).
* [tabular][manifold_align.data.tabular]: a CSV/TSV of image path and caption.
* [tokenizer][manifold_align.data.tokenizer]: byte-level BPE (Hugging Face ``tokenizers``), the
  bundled vocabulary and OpenAI CLIP's ([clip_tokenizer][manifold_align.data.tokenizer.clip_tokenizer]).
* [clip_bpe][manifold_align.data.clip_bpe]: CLIP's shipped merges, split pattern and cleaning.
* [transforms][manifold_align.data.transforms]: Pillow + torch image transforms.
* [collate][manifold_align.data.collate]: samples -> ``Batch(images, tokens, skipped)``.
* [skipped][manifold_align.data.skipped]: the count of unreadable samples, and the error for
  data with nothing usable.
"""

from manifold_align.data.collate import Batch, Collate
from manifold_align.data.skipped import (
    REASONS,
    SampleError,
    SkippedSample,
    SkippedSamples,
    UnusableDataError,
)
from manifold_align.data.synthetic import (
    ATTRIBUTES,
    ZERO_SHOT_TASKS,
    SyntheticCaptions,
    SyntheticConfig,
    SyntheticZeroShot,
    ZeroShotTask,
    synthetic_corpus,
    train_synthetic_tokenizer,
)
from manifold_align.data.tabular import CaptionTable, read_captions
from manifold_align.data.tokenizer import (
    Tokenizer,
    basic_clean,
    clip_tokenizer,
    default_tokenizer,
)
from manifold_align.data.transforms import CLIP_MEAN, CLIP_STD, ImageTransform, to_rgb
from manifold_align.data.webdataset import WebDatasetReader, write_shards

__all__ = [
    "ATTRIBUTES",
    "CLIP_MEAN",
    "CLIP_STD",
    "REASONS",
    "ZERO_SHOT_TASKS",
    "Batch",
    "CaptionTable",
    "Collate",
    "ImageTransform",
    "SampleError",
    "SkippedSample",
    "SkippedSamples",
    "SyntheticCaptions",
    "SyntheticConfig",
    "SyntheticZeroShot",
    "Tokenizer",
    "UnusableDataError",
    "WebDatasetReader",
    "ZeroShotTask",
    "basic_clean",
    "clip_tokenizer",
    "default_tokenizer",
    "read_captions",
    "synthetic_corpus",
    "to_rgb",
    "train_synthetic_tokenizer",
    "write_shards",
]
