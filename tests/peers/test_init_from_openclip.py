"""``manifold-align train`` with ``model.init_from`` = a state_dict file saved by OpenCLIP.

The peer is OpenCLIP's model of our ``tiny`` architecture (registered in OpenCLIP from its
config, random weights, every parameter perturbed, nothing downloaded), saved as OpenCLIP
users have it. The run's step-0 checkpoint must hold exactly the converter's reading of the
peer's tensors and embed like OpenCLIP's own ``encode_image``/``encode_text``; the run then
trains. The sphere -> oblique case (``model.name: tiny-oblique``) starts from the
conversion of those weights.

The tokenizer is a small byte-level BPE whose start and end tokens are its two largest ids,
as in CLIP's vocabulary: OpenCLIP pools the text at each row's largest id, and that is then
the end token.
"""

from __future__ import annotations

import dataclasses
import json
import math

import open_clip
import pytest
import torch
from pretrained_support import CAPTIONS, TOL, perturb
from tokenizers import Tokenizer as HFTokenizer
from tokenizers import decoders, models, pre_tokenizers, trainers

from manifold_align.cli import main
from manifold_align.data.tokenizer import EOT, PAD, SOT
from manifold_align.models import build_model, model_config
from manifold_align.models.convert import sphere_to_oblique
from manifold_align.pretrained import load_pretrained
from manifold_align.pretrained.layout import from_peer
from manifold_align.pretrained.openclip import openclip_rules
from manifold_align.train.metrics import read_metrics
from manifold_align.train.run import load_trained

pytestmark = pytest.mark.filterwarnings("ignore")

# Our registry's ``tiny`` in OpenCLIP's config format (as in test_pretrained_openclip.py).
TINY = {
    "embed_dim": 128,
    "vision_cfg": {"image_size": 64, "layers": 3, "width": 128, "head_width": 32, "patch_size": 8},
    "text_cfg": {"context_length": 32, "vocab_size": 1024, "width": 128, "heads": 4, "layers": 3},
}

RUN = [
    "data.source=synthetic", "data.synthetic.size=16", "data.batch_size=4", "data.num_workers=0",
    "train.steps=2", "train.log_every=1", "train.ckpt_every=0", "train.device=cpu",
    "train.precision=fp32", "eval.zeroshot_samples=0", "eval.retrieval_samples=0",
    "model.overrides.vocab_size=1024", "optim.lr=1e-3", "schedule.warmup_steps=0",
]


@pytest.fixture(scope="module")
def peer_file(tmp_path_factory):
    """OpenCLIP's ``tiny``, perturbed, its ``state_dict`` saved with ``torch.save``; and a
    tokenizer file whose start/end ids are its largest."""
    folder = tmp_path_factory.mktemp("init_from_openclip")
    (folder / "ma-tiny.json").write_text(json.dumps(TINY))
    open_clip.add_model_config(folder)
    torch.manual_seed(0)
    peer = perturb(open_clip.create_model("ma-tiny", pretrained=None), seed=3)
    path = folder / "open_clip_pytorch_model.bin"
    torch.save(peer.state_dict(), path)
    tok = HFTokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    corpus = CAPTIONS * 4 + ["a red circle on the left", "a small blue square at the top"] * 4
    tok.train_from_iterator(corpus, trainers.BpeTrainer(
        vocab_size=400, special_tokens=[PAD], show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    tok.add_special_tokens([SOT, EOT])  # appended: the two largest ids
    tok.save(str(folder / "tokenizer.json"))
    return peer, path, folder / "tokenizer.json"


def _train(tmp_path, capsys, name: str, path, tokenizer) -> tuple:
    run = tmp_path / name
    sets = [*RUN, f"model.name={name}", f"model.init_from={path}", f"data.tokenizer={tokenizer}"]
    argv = ["train", "--config", "tiny-oblique", "--out", str(run), "--no-progress"]
    for s in sets:
        argv += ["--set", s]
    assert main(argv) == 0, capsys.readouterr().err
    start, tok, _ = load_trained(run / "checkpoints" / "step_00000000")
    trained, _, _ = load_trained(run)
    losses = [r["loss"] for r in read_metrics(run / "metrics.jsonl") if r["kind"] == "train"]
    return start, tok, trained, losses


def _assert_trained(start, trained, losses) -> None:
    assert len(losses) == 2 and all(math.isfinite(x) for x in losses), losses
    after = trained.state_dict()
    changed = [k for k, v in start.state_dict().items() if not torch.equal(v, after[k])]
    assert "vision.conv1.weight" in changed and "text.token_embedding.weight" in changed


def test_init_from_an_openclip_file_starts_at_its_weights_and_trains(peer_file, tmp_path, capsys):
    peer, path, tokenizer = peer_file
    start, tok, trained, losses = _train(tmp_path, capsys, "tiny", path, tokenizer)
    assert tok.eot_id == tok.vocab_size - 1 and tok.sot_id == tok.vocab_size - 2
    # step 0 holds exactly the converter's reading of OpenCLIP's tensors, element for element
    expected = from_peer(openclip_rules(model_config("tiny")), peer.state_dict())
    state = start.state_dict()
    assert expected.keys() == state.keys()
    for key, tensor in expected.items():
        assert torch.equal(state[key], tensor), key
    # and embeds what OpenCLIP embeds on the same input
    images = torch.randn(3, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    tokens = tok(CAPTIONS)
    with torch.no_grad():
        image = (start.encode_image(images) - peer.encode_image(images, normalize=True)).abs().max()
        text = (start.encode_text(tokens) - peer.encode_text(tokens, normalize=True)).abs().max()
    print(f"max |step 0 - OpenCLIP|: image {float(image):.2e}, text {float(text):.2e}")  # -rP
    assert float(image) <= TOL and float(text) <= TOL, (float(image), float(text))
    _assert_trained(start, trained, losses)


def test_init_from_an_openclip_file_converts_to_oblique_with_the_runs_end_token(
    peer_file, tmp_path, capsys
):
    # the summary rows imitate the end token the pretrained model pooled at: with this
    # tokenizer that is its EOT id (the largest id of each row), not the model's last row
    _, path, tokenizer = peer_file
    start, tok, trained, losses = _train(tmp_path, capsys, "tiny-oblique", path, tokenizer)
    assert start.manifold.point_shape == (8, 16)
    source = load_pretrained(path)
    pooled = build_model(dataclasses.replace(source.config, eot_id=tok.eot_id))
    pooled.load_state_dict(source.state_dict())
    expected = sphere_to_oblique(pooled, start.config, sot_id=tok.sot_id).state_dict()
    state = start.state_dict()
    assert expected.keys() == state.keys()
    for key, tensor in expected.items():
        assert torch.equal(state[key], tensor), key
    _assert_trained(start, trained, losses)


def test_init_from_an_openclip_file_refuses_a_tokenizer_whose_end_is_not_its_largest_id(
    peer_file, tmp_path, capsys
):
    # OpenCLIP pools at each row's largest id; the bundled vocabulary's EOT is id 1, so the
    # step-0 model would read the text at another token than the pretrained one did
    _, path, _ = peer_file
    run = tmp_path / "bundled"
    argv = ["train", "--config", "tiny-oblique", "--out", str(run), "--no-progress"]
    for s in [*RUN, "model.name=tiny", f"model.init_from={path}", "data.tokenizer=bundled"]:
        argv += ["--set", s]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "data.tokenizer" in err and "largest id" in err, err
    assert not run.exists()
