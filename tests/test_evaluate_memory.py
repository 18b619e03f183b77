"""The zero-shot memory model against a real run: torch's CPU memory profiler, two sizes."""

from __future__ import annotations

import pytest
import torch
from torch.profiler import ProfilerActivity, profile

from manifold_align.config import from_dict
from manifold_align.data.tokenizer import default_tokenizer
from manifold_align.evaluate.benchmarks import open_benchmark
from manifold_align.evaluate.demo_datasets import write_benchmark_datasets
from manifold_align.evaluate.standard import evaluate_benchmark, zeroshot_memory
from manifold_align.train.config import RunConfig
from manifold_align.train.run import build_run_model

MICRO = {
    "image_size": 16, "patch_size": 8, "vision_width": 16, "vision_layers": 1,
    "vision_heads": 2, "text_width": 16, "text_layers": 1, "text_heads": 2, "tokens": 4,
    "token_dim": 8,
}
CLASSES, TEMPLATES, BATCH = 60, 4, 16


def peak_bytes(fn) -> int:
    """Peak of the CPU tensor bytes allocated inside ``fn`` and alive at once: the torch
    profiler records every allocation (+bytes) and free (-bytes) as a ``[memory]`` event."""
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    events = sorted((e.start_ns(), e.nbytes()) for e in prof.profiler.kineto_results.events()
                    if e.name() == "[memory]")
    live = best = 0
    for _, size in events:
        live += size
        best = max(best, live)
    return best


@pytest.fixture(scope="module")
def benchmarks(tmp_path_factory):
    root = tmp_path_factory.mktemp("memory")
    return {n: _benchmark(root / str(n), n) for n in (3, 9)}


def _benchmark(root, per_class):
    paths = write_benchmark_datasets(root, images_per_class=per_class, retrieval_images=2, image_size=16)
    names = (paths["colours"] / "classnames.txt").read_text().split("\n")[:7]
    names += [f"thing {i}" for i in range(CLASSES - 7)]
    (paths["colours"] / "classnames.txt").write_text("\n".join(names) + "\n")
    return open_benchmark(f"folder/x={paths['colours']}")


@pytest.mark.parametrize("context", [32, 8], ids=["text-phase-peak", "image-phase-peak"])
def test_zeroshot_peak_matches_the_memory_model_and_does_not_grow_with_images(benchmarks, context):
    # a 32-token text tower costs this micro model more than its image tower; at 8 tokens the
    # image batch is the larger: both branches of the model's max are checked
    tok = default_tokenizer(context)
    torch.manual_seed(0)
    model = build_run_model(from_dict(RunConfig, {"model": {"name": "tiny-oblique", "overrides": MICRO}}), tok).eval()
    torch.set_num_threads(1)
    measured = {}
    for per_class, bench in benchmarks.items():  # 21 and 63 images, the same batch size
        measured[per_class] = peak_bytes(lambda b=bench: evaluate_benchmark(model, tok, b, batch_size=BATCH))
    images = torch.randn(BATCH, 3, 16, 16)
    tokens = tok(["a photo of a thing 1."] * BATCH)
    with torch.no_grad():
        forward_image = peak_bytes(lambda: model.encode_image(images))
        forward_text = peak_bytes(lambda: model.encode_text(tokens))
    dim = model.manifold.flat_dim
    expected = zeroshot_memory(CLASSES, TEMPLATES, dim, batch_size=BATCH, image_size=16, context_length=context,
                               forward_text=forward_text, forward_image=forward_image)
    assert measured[9] == pytest.approx(measured[3], rel=0.01)  # three times the images
    text_phase = expected.prompts + expected.forward_text
    image_phase = expected.images + max(expected.images, expected.forward_image, expected.scores)
    assert (text_phase > image_phase) == (context == 32)
    assert measured[3] == pytest.approx(expected.peak, rel=0.02), (measured, expected)
