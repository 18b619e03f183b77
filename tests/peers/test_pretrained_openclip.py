"""manifold_align.pretrained against real OpenCLIP models (random weights, nothing downloaded).

Architectures: OpenCLIP's own ``ViT-B-32`` (GELU) and our ``tiny`` registered in OpenCLIP,
as GELU and as QuickGELU. Every parameter of the peer is perturbed first, so a swapped
layer norm or bias could not hide behind OpenCLIP's ones/zeros initialisation.
"""

from __future__ import annotations

import json

import numpy as np
import open_clip
import pytest
import safetensors.torch
import torch
from PIL import Image
from pretrained_support import CAPTIONS, TOL, assert_state_equal, perturb, tiny_tokens

from manifold_align.models import build_model
from manifold_align.pretrained import (
    CheckpointMismatchError,
    create_model_and_transforms,
    export_openclip,
    get_tokenizer,
    load_pretrained,
)
from manifold_align.pretrained.architecture import infer_name
from manifold_align.pretrained.openclip import openclip_rules

pytestmark = pytest.mark.filterwarnings("ignore")

# Our registry's ``tiny`` in OpenCLIP's config format (4 heads of 32 in both towers).
TINY = {
    "embed_dim": 128,
    "vision_cfg": {"image_size": 64, "layers": 3, "width": 128, "head_width": 32, "patch_size": 8},
    "text_cfg": {"context_length": 32, "vocab_size": 1024, "width": 128, "heads": 4, "layers": 3},
}


@pytest.fixture(scope="module", autouse=True)
def tiny_config(tmp_path_factory):
    folder = tmp_path_factory.mktemp("openclip_configs")
    (folder / "ma-tiny.json").write_text(json.dumps(TINY))
    open_clip.add_model_config(folder)




def max_diff(peer, ours, images, tokens) -> tuple[float, float]:
    with torch.no_grad():
        image = (peer.encode_image(images, normalize=True) - ours.encode_image(images)).abs().max()
        text = (peer.encode_text(tokens, normalize=True) - ours.encode_text(tokens)).abs().max()
    print(f"max |ours - peer|: image {float(image):.2e}, text {float(text):.2e}")  # shown by -rP
    return float(image), float(text)



@pytest.fixture(scope="module")
def vit_b_32(tmp_path_factory):
    """OpenCLIP's ViT-B-32, perturbed, and the state_dict file it saves."""
    peer = perturb(open_clip.create_model("ViT-B-32", pretrained=None), seed=0)
    path = tmp_path_factory.mktemp("vit_b_32") / "open_clip_model.pt"
    torch.save(peer.state_dict(), path)
    return peer, path


def test_vit_b_32_from_openclip_embeds_like_openclip(vit_b_32):
    peer, path = vit_b_32
    ours, _, preprocess = create_model_and_transforms("ViT-B-32", pretrained=str(path))
    ours.eval()
    assert ours.config.activation == "gelu" and ours.config.eot_id is None
    assert torch.equal(ours.temperature.logit_scale, peer.logit_scale)
    peer_preprocess = open_clip.image_transform(224, is_train=False)  # what OpenCLIP returns
    rng = np.random.default_rng(0)
    pictures = [Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
                for w, h in [(300, 225), (231, 400)]]
    images = torch.stack([preprocess(p) for p in pictures])
    assert torch.equal(images, torch.stack([peer_preprocess(p) for p in pictures]))
    tokens = open_clip.get_tokenizer("ViT-B-32")(CAPTIONS)
    # the switch is one import line: our get_tokenizer gives OpenCLIP's ids, row for row
    assert torch.equal(get_tokenizer("ViT-B-32")(CAPTIONS), tokens)
    image, text = max_diff(peer, ours, images, tokens)
    assert image <= TOL and text <= TOL, (image, text)
    # ours -> OpenCLIP (strict) -> ours is bit-identical.
    out = export_openclip(ours, path.with_name("ours.safetensors"))
    back = open_clip.create_model("ViT-B-32", pretrained=str(out)).eval()
    back.load_state_dict(safetensors.torch.load_file(out), strict=True)
    assert_state_equal(back.state_dict(), peer.state_dict())


def test_vit_b_32_is_not_read_as_another_architecture(vit_b_32):
    with pytest.raises(CheckpointMismatchError, match=r"visual.conv1.weight is \(768, 3, 32, 32\), expected \(768, 3, 16, 16\)"):
        load_pretrained(vit_b_32[1], "ViT-B-16")


@pytest.mark.parametrize("name", ["ViT-B-16", "ViT-L-14", "ViT-B-32-quickgelu"])
def test_openclip_tensor_shapes_identify_our_architecture(name):
    with torch.device("meta"):
        peer = open_clip.create_model(name, pretrained=None, device="meta")
    found = {k: tuple(v.shape) for k, v in peer.state_dict().items()}
    assert infer_name(found, openclip_rules, name, "OpenCLIP") == name.removesuffix("-quickgelu")


@pytest.mark.parametrize("quick_gelu", [False, True])
def test_tiny_round_trips_through_openclip_exactly(tmp_path, quick_gelu):
    torch.manual_seed(1)
    name = "tiny-quickgelu" if quick_gelu else "tiny"
    ours = perturb(build_model("tiny", activation="quick_gelu" if quick_gelu else "gelu"), seed=1)
    path = export_openclip(ours, tmp_path / "ours.safetensors")
    peer = open_clip.create_model("ma-tiny", pretrained=str(path), force_quick_gelu=quick_gelu).eval()
    images, tokens = torch.randn(3, 3, 64, 64), tiny_tokens()
    image, text = max_diff(peer, ours, images, tokens)
    assert image <= TOL and text <= TOL, (image, text)
    # OpenCLIP's trainer checkpoint: {"state_dict": ...} with DistributedDataParallel's prefix.
    state = {f"module.{k}": v for k, v in peer.state_dict().items()}
    torch.save({"epoch": 1, "name": "run", "state_dict": state}, tmp_path / "epoch_1.pt")
    back = load_pretrained(tmp_path / "epoch_1.pt", name)
    assert_state_equal(back.state_dict(), ours.state_dict())
    with torch.no_grad():
        assert torch.equal(back.encode_text(tokens), ours.encode_text(tokens))


def test_eval_pretrained_runs_the_benchmarks_on_an_openclip_file(vit_b_32, tmp_path, capsys):
    # manifold-align eval on weights saved by open_clip: no run folder, the architecture read
    # from the tensors, CLIP's BPE (the embeddings' equality is the test above)
    from manifold_align.cli import main
    from manifold_align.evaluate.demo_datasets import write_benchmark_datasets

    _, path = vit_b_32
    data = write_benchmark_datasets(tmp_path / "data", images_per_class=1, retrieval_images=3,
                                    image_size=224)
    out = tmp_path / "eval.json"
    argv = ["eval", "--pretrained", str(path), "--out", str(out), "--benchmark",
            f"folder/colours={data['colours']},templates=imagenet1k-7"]
    assert main(argv) == 0, capsys.readouterr().err
    printed = capsys.readouterr().out
    assert "ViT-B-32 (pretrained)" in printed and "| folder/colours | zero-shot top-1 |" in printed
    entry = json.loads(out.read_text())["benchmarks"][0]
    assert entry["model"] == "ViT-B-32" and entry["step"] is None
    result = entry["results"]["folder/colours"]
    assert 0.0 <= result["top1"] <= 1.0
