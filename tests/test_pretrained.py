"""manifold_align.pretrained without the peers: formats, wrappers, errors, round trips on ``tiny``.

The exactness tests against real OpenCLIP and transformers models live in tests/peers/.
"""

from __future__ import annotations

import dataclasses
import json
import re

import pytest
import torch
from PIL import Image

from manifold_align.data.transforms import ImageTransform
from manifold_align.models import build_model, registry
from manifold_align.models.transformer import QuickGELU
from manifold_align.pretrained import (
    CheckpointMismatchError,
    PretrainedError,
    create_model,
    create_model_and_transforms,
    export_huggingface,
    export_openclip,
    get_tokenizer,
    load_pretrained,
)
from manifold_align.pretrained.formats import read_tensors, write_tensors

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    model = build_model("tiny").eval()
    with torch.no_grad():  # a non-default scale, so carrying it over is visible
        model.temperature.logit_scale.fill_(3.25)
    return model


def batch(model, n=3, seed=1):
    g = torch.Generator().manual_seed(seed)
    c = model.config
    images = torch.randn(n, 3, c.image_size, c.image_size, generator=g)
    tokens = torch.randint(1, c.vocab_size - 1, (n, c.context_length), generator=g)
    tokens[:, 0] = c.vocab_size - 2
    for i, end in enumerate(range(5, 5 + n)):  # EOT (the largest id) then zero padding
        tokens[i, end] = c.vocab_size - 1
        tokens[i, end + 1 :] = 0
    return images, tokens


def assert_same_model(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for k in sa:
        assert torch.equal(sa[k], sb[k]), k
    images, tokens = batch(a)
    with torch.no_grad():
        assert torch.equal(a.encode_image(images), b.encode_image(images))
        assert torch.equal(a.encode_text(tokens), b.encode_text(tokens))


# ---------------------------------------------------------------------------- the activation


def test_quick_gelu_is_x_sigmoid_1702x_and_selected_by_the_config():
    x = torch.linspace(-6, 6, 101)
    assert torch.equal(QuickGELU()(x), x * torch.sigmoid(1.702 * x))
    assert isinstance(build_model("tiny", activation="quick_gelu").vision.transformer.blocks[0].mlp.act, QuickGELU)
    assert isinstance(build_model("tiny").text.transformer.blocks[0].mlp.act, torch.nn.GELU)
    with pytest.raises(ValueError, match="activation"):
        build_model("tiny", activation="relu")


# ---------------------------------------------------------------------------- round trips


@pytest.mark.parametrize("suffix", [".safetensors", ".pt", ".bin"])
def test_openclip_file_round_trip_is_bit_identical_and_infers_the_name(tiny, tmp_path, suffix):
    path = export_openclip(tiny, tmp_path / f"model{suffix}")
    tensors = read_tensors(path)
    assert tensors["visual.proj"].shape == (128, 128) and tensors["logit_scale"].shape == ()
    assert torch.equal(tensors["visual.proj"], tiny.image_head.proj.weight.t())
    loaded = load_pretrained(path)
    assert loaded.config == tiny.config
    assert float(loaded.temperature.logit_scale) == 3.25
    assert not loaded.training
    assert_same_model(tiny, loaded)


def test_openclip_trainer_wrapper_and_ddp_prefix_are_unwrapped(tiny, tmp_path):
    plain = export_openclip(tiny, tmp_path / "plain.pt")
    state = {f"module.{k}": v for k, v in torch.load(plain, weights_only=True).items()}
    torch.save({"epoch": 3, "name": "run", "state_dict": state, "optimizer": {"state": {}}},
               tmp_path / "epoch_3.pt")
    assert_same_model(tiny, load_pretrained(tmp_path / "epoch_3.pt", "tiny"))
    state = torch.load(plain, weights_only=True)
    state["logit_scale"] = state["logit_scale"].reshape(1)  # as some writers store it
    torch.save(state, tmp_path / "scale_1.pt")
    assert_same_model(tiny, load_pretrained(tmp_path / "scale_1.pt"))


def test_quickgelu_name_is_carried_by_the_name_not_the_file(tmp_path):
    torch.manual_seed(2)
    model = build_model("tiny", activation="quick_gelu").eval()
    path = export_openclip(model, tmp_path / "q.safetensors")
    loaded = load_pretrained(path, "tiny-quickgelu")
    assert loaded.config.activation == "quick_gelu"
    assert_same_model(model, loaded)
    # An OpenCLIP file does not record the activation: without the suffix it is read as GELU.
    plain = load_pretrained(path)
    images, _ = batch(model)
    with torch.no_grad():
        assert not torch.allclose(plain.encode_image(images), model.encode_image(images))


@pytest.mark.parametrize("eot_id", [None, 1023, 7])
def test_huggingface_folder_round_trip_keeps_weights_activation_and_pooling(tmp_path, eot_id):
    torch.manual_seed(3)
    model = build_model("tiny", activation="quick_gelu", eot_id=eot_id).eval()
    folder = export_huggingface(model, tmp_path / "hf")
    config = json.loads((folder / "config.json").read_text())
    assert config["text_config"]["eos_token_id"] == (2 if eot_id is None else eot_id)
    assert config["vision_config"]["hidden_act"] == "quick_gelu"
    loaded = load_pretrained(folder)
    assert loaded.config == model.config
    assert_same_model(model, loaded)


def test_huggingface_folder_with_pytorch_model_bin_or_shards_loads(tiny, tmp_path):
    folder = export_huggingface(tiny, tmp_path / "hf")
    tensors = read_tensors(folder / "model.safetensors")
    (folder / "model.safetensors").unlink()
    torch.save(tensors, folder / "pytorch_model.bin")
    assert_same_model(tiny, load_pretrained(folder))
    (folder / "pytorch_model.bin").unlink()
    keys = sorted(tensors)
    shards = {"a.safetensors": keys[: len(keys) // 2], "b.safetensors": keys[len(keys) // 2 :]}
    for name, part in shards.items():
        write_tensors({k: tensors[k] for k in part}, folder / name)
    weight_map = {k: name for name, part in shards.items() for k in part}
    (folder / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))
    assert_same_model(tiny, load_pretrained(folder))


def test_huggingface_defaults_omitted_by_save_pretrained_are_filled(tiny, tmp_path):
    folder = export_huggingface(tiny, tmp_path / "hf")
    config = json.loads((folder / "config.json").read_text())
    for section in ("text_config", "vision_config"):  # values equal to CLIPConfig's defaults
        for key in ("layer_norm_eps", "num_channels"):
            config[section].pop(key, None)
    (folder / "config.json").write_text(json.dumps(config))
    assert_same_model(tiny, load_pretrained(folder, "tiny"))


def test_old_transformers_position_ids_are_accepted_only_as_arange(tiny, tmp_path):
    folder = export_huggingface(tiny, tmp_path / "hf")
    tensors = read_tensors(folder / "model.safetensors")
    tensors["text_model.embeddings.position_ids"] = torch.arange(32)[None]
    write_tensors(tensors, folder / "model.safetensors")
    assert_same_model(tiny, load_pretrained(folder))
    tensors["text_model.embeddings.position_ids"] = torch.arange(32).flip(0)[None]
    write_tensors(tensors, folder / "model.safetensors")
    with pytest.raises(PretrainedError, match="position_ids is not arange"):
        load_pretrained(folder)


def test_fixed_temperature_exports_its_log_scale(tmp_path):
    model = build_model("tiny", temperature="fixed", temperature_init=50.0)
    tensors = read_tensors(export_openclip(model, tmp_path / "f.safetensors"))
    assert torch.allclose(tensors["logit_scale"], torch.tensor(50.0).log())


# ---------------------------------------------------------------------------- errors


def test_missing_extra_and_misshapen_keys_are_named(tiny, tmp_path):
    tensors = read_tensors(export_openclip(tiny, tmp_path / "ok.safetensors"))
    broken = dict(tensors)
    del broken["visual.ln_post.bias"]
    broken["visual.extra"] = torch.zeros(2)
    broken["text_projection"] = torch.zeros(128, 64)
    write_tensors(broken, tmp_path / "bad.safetensors")
    with pytest.raises(CheckpointMismatchError) as info:
        load_pretrained(tmp_path / "bad.safetensors", "tiny")
    message = str(info.value)
    assert "missing keys (1): visual.ln_post.bias" in message
    assert "unexpected keys (1): visual.extra" in message
    assert "text_projection is (128, 64), expected (128, 128)" in message
    assert info.value.missing == ["visual.ln_post.bias"]
    # Without a name, nothing matches: the closest architecture's differences are given.
    with pytest.raises(CheckpointMismatchError, match="closest: 'tiny'"):
        load_pretrained(tmp_path / "bad.safetensors")


def test_another_architecture_is_refused_naming_keys(tiny, tmp_path):
    path = export_openclip(tiny, tmp_path / "tiny.safetensors")
    with pytest.raises(CheckpointMismatchError, match=r"ViT-B-32 in OpenCLIP's layout: missing keys \(216\): "
                       r"transformer.resblocks.10.*positional_embedding is \(32, 128\), expected \(77, 512\)"):
        load_pretrained(path, "ViT-B-32")


def test_shapes_that_fit_two_architectures_ask_for_a_name(tiny, tmp_path, monkeypatch):
    heads8 = dataclasses.replace(registry.model_config("tiny"), vision_heads=8, text_heads=8)
    monkeypatch.setitem(registry._MODELS, "tiny-8-heads", heads8)
    path = export_openclip(tiny, tmp_path / "tiny.safetensors")
    with pytest.raises(CheckpointMismatchError, match=r"several architectures \(tiny, tiny-8-heads\)"):
        load_pretrained(path)
    assert load_pretrained(path, "tiny-8-heads").config.vision_heads == 8


def test_huggingface_config_errors_name_the_field(tiny, tmp_path):
    folder = export_huggingface(tiny, tmp_path / "hf")
    good = json.loads((folder / "config.json").read_text())
    with pytest.raises(PretrainedError, match=re.escape("patch_size: config.json 8, ViT-B-32 32")):
        load_pretrained(folder, "ViT-B-32")
    for section, key, value, match in [
        ("text_config", "hidden_act", "gelu_new", "text_config.hidden_act"),
        ("vision_config", "intermediate_size", 100, "vision_config.intermediate_size"),
        ("vision_config", "layer_norm_eps", 1e-6, "vision_config.layer_norm_eps"),
        ("vision_config", "hidden_act", "quick_gelu", "differ"),
    ]:
        bad = json.loads(json.dumps(good))
        bad[section][key] = value
        (folder / "config.json").write_text(json.dumps(bad))
        with pytest.raises(PretrainedError, match=match):
            load_pretrained(folder)
    square = json.loads(json.dumps(good))
    square["vision_config"]["image_size"] = [64, 64]  # transformers also accepts (h, w) sizes
    square["text_config"]["eos_token_id"] = [2]
    (folder / "config.json").write_text(json.dumps(square))
    assert load_pretrained(folder).config == tiny.config
    square["vision_config"]["image_size"] = [64, 32]
    (folder / "config.json").write_text(json.dumps(square))
    with pytest.raises(PretrainedError, match=r"vision_config\.image_size: expected an integer, got \[64, 32\]"):
        load_pretrained(folder)
    (folder / "config.json").write_text(json.dumps({**good, "model_type": "siglip"}))
    with pytest.raises(PretrainedError, match="model_type"):
        load_pretrained(folder)
    (folder / "config.json").write_text(json.dumps(good))
    with pytest.raises(PretrainedError, match="asks for QuickGELU"):
        load_pretrained(folder, "tiny-quickgelu")


@pytest.mark.filterwarnings("ignore")
def test_a_torchscript_archive_is_refused_not_executed(tmp_path):
    torch.jit.script(torch.nn.Linear(2, 2)).save(str(tmp_path / "jit.pt"))  # OpenAI's format
    with pytest.raises(PretrainedError, match="never a full pickle or a TorchScript archive"):
        load_pretrained(tmp_path / "jit.pt")


def test_unreadable_and_foreign_files_are_refused(tiny, tmp_path):
    torch.save({"state_dict": {"visual.proj": torch.nn.Linear(2, 2)}}, tmp_path / "pickle.pt")
    with pytest.raises(PretrainedError, match=r"weights_only=True"):
        load_pretrained(tmp_path / "pickle.pt")
    torch.save({"visual.proj": torch.zeros(2), "epoch": 3}, tmp_path / "mixed.pt")
    with pytest.raises(PretrainedError, match="'epoch' are not tensors"):
        load_pretrained(tmp_path / "mixed.pt")
    (tmp_path / "model.onnx").write_bytes(b"x")
    with pytest.raises(PretrainedError, match="unknown checkpoint suffix"):
        load_pretrained(tmp_path / "model.onnx")
    (tmp_path / "junk.safetensors").write_bytes(b"not safetensors")
    with pytest.raises(PretrainedError, match=re.escape("not a readable .safetensors")):
        load_pretrained(tmp_path / "junk.safetensors")
    with pytest.raises(FileNotFoundError):
        load_pretrained(tmp_path / "absent.pt")
    folder = export_huggingface(tiny, tmp_path / "hf")
    with pytest.raises(PretrainedError, match="pass the folder"):
        load_pretrained(folder / "model.safetensors")
    (folder / "model.safetensors").rename(folder / "weights.safetensors")
    with pytest.raises(PretrainedError, match="no weights found"):
        load_pretrained(folder)
    (folder / "config.json").unlink()
    with pytest.raises(PretrainedError, match=re.escape("config.json is missing")):
        load_pretrained(folder)
    torch.save({"layer.weight": torch.zeros(1)}, tmp_path / "other.pt")
    with pytest.raises(PretrainedError, match=re.escape("first keys: layer.weight")):
        load_pretrained(tmp_path / "other.pt")


def test_oblique_and_sigmoid_models_are_not_exported_or_loaded_as_clip(tiny, tmp_path):
    with pytest.raises(PretrainedError, match="sphere models"):
        export_openclip(build_model("tiny-oblique"), tmp_path / "o.safetensors")
    with pytest.raises(PretrainedError, match=re.escape("loss.logit_bias")):
        export_huggingface(build_model("tiny", loss="sigmoid"), tmp_path / "s")
    with pytest.raises(PretrainedError, match="eot_id=7"):
        export_openclip(build_model("tiny", eot_id=7), tmp_path / "e.safetensors")
    path = export_openclip(tiny, tmp_path / "t.safetensors")
    with pytest.raises(ValueError, match="oblique model"):
        load_pretrained(path, "tiny-oblique")
    with pytest.raises(ValueError, match="unknown architecture 'RN50'"):
        load_pretrained(path, "RN50")
    assert not list(tmp_path.glob("[ose]*"))  # nothing written by the refused exports


def test_exports_never_overwrite_without_being_asked(tiny, tmp_path):
    path = tmp_path / "keep.safetensors"
    path.write_bytes(b"user's file")
    with pytest.raises(FileExistsError, match="overwrite=True"):
        export_openclip(tiny, path)
    assert path.read_bytes() == b"user's file"
    folder = tmp_path / "hf"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    with pytest.raises(FileExistsError):
        export_huggingface(tiny, folder)
    assert (folder / "config.json").read_text() == "{}" and not (folder / "model.safetensors").exists()
    export_openclip(tiny, path, overwrite=True)
    assert_same_model(tiny, load_pretrained(path))


# ---------------------------------------------------------------------------- OpenCLIP entry points


def test_create_model_and_transforms_loads_a_file_and_gives_clip_preprocessing(tiny, tmp_path):
    path = export_openclip(tiny, tmp_path / "t.safetensors")
    model, train, val = create_model_and_transforms("tiny", pretrained=str(path))
    assert_same_model(tiny, model)
    image = Image.new("RGB", (90, 70), (200, 30, 60))
    assert torch.equal(val(image), ImageTransform(64)(image))
    assert val(image).shape == train(image).shape == (3, 64, 64)
    assert train.train and train.scale == (0.9, 1.0)
    half, _, _ = create_model_and_transforms("tiny", pretrained=path, precision="bf16")
    assert half.vision.conv1.weight.dtype == torch.bfloat16
    q = create_model("tiny", force_quick_gelu=True, vision_layers=1)
    assert q.config.activation == "quick_gelu" and q.config.vision_layers == 1


def test_create_model_refuses_what_it_cannot_do(tmp_path):
    with pytest.raises(ValueError, match="download tags"):
        create_model("ViT-B-32", pretrained="laion2b_s34b_b79k")
    with pytest.raises(ValueError, match="jit"):
        create_model("tiny", jit=True)
    with pytest.raises(ValueError, match="precision"):
        create_model("tiny", precision="fp8")
    path = export_openclip(build_model("tiny"), tmp_path / "t.safetensors")
    with pytest.raises(ValueError, match="vision_layers"):
        create_model("tiny", pretrained=path, vision_layers=1)


def test_get_tokenizer_hands_out_the_clip_tokenizer_with_the_context_length(monkeypatch):
    import manifold_align.data.tokenizer as tokenizer_module

    calls = []
    monkeypatch.setattr(
        tokenizer_module, "clip_tokenizer", lambda context_length: calls.append(context_length) or "tok",
        raising=False,
    )
    assert get_tokenizer("ViT-B-32") == "tok"
    assert get_tokenizer("ViT-L-14-quickgelu", context_length=20) == "tok"
    assert get_tokenizer() == "tok"
    assert calls == [77, 20, 77]
    with pytest.raises(ValueError, match="vocabulary of 1024"):
        get_tokenizer("tiny")


def test_registered_name_of_a_config_round_trips_through_resolve_name():
    from manifold_align.pretrained.architecture import registered_name, resolve_name

    assert registered_name(registry.model_config("tiny")) == "tiny"
    quick = dataclasses.replace(registry.model_config("tiny"), activation="quick_gelu")
    assert registered_name(quick) == "tiny-quickgelu"
    assert resolve_name(registered_name(quick))[1] == quick
    assert registered_name(dataclasses.replace(quick, text_layers=quick.text_layers + 1)) is None
