"""Inference: the spec's preprocessing, test-time augmentation (AlexNet's ten crops), `predict` end to end,
and weights imported from a torchvision state_dict file."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
from PIL import Image, ImageDraw

import archspec
from archspec.cli import main as run_cli
from archspec.backend.tta import TestTimeAugmentation, preprocess, resize_size
from conftest import SPECS


def photo(path: Path, size: tuple[int, int] = (320, 240), mode: str = "RGB") -> Path:
    """A real image file: a colour gradient with two shapes, saved by Pillow (PNG or JPEG by suffix)."""
    width, height = size
    image = Image.new("RGB", size)
    draw = ImageDraw.Draw(image)
    for y in range(height):
        draw.line([(0, y), (width - 1, y)], fill=(y * 255 // height, 255 - y * 255 // height, (y * 3) % 256))
    draw.ellipse([width // 6, height // 6, width // 2, height * 3 // 4], fill=(220, 30, 40))
    draw.rectangle([width // 2, height // 3, width - 10, height - 10], fill=(20, 40, 200))
    image.convert(mode).save(path)
    return path


def torchvision_eval(spec: archspec.Spec, resize: int, crop: int | None = None):
    """The reference eval transform: Resize -> CenterCrop -> ToTensor -> Normalize (torchvision, PIL path)."""
    from torchvision import transforms

    size = crop or spec.input.shape[1]
    return transforms.Compose([transforms.Resize(resize), transforms.CenterCrop(size), transforms.ToTensor(),
                               transforms.Normalize(spec.preprocess.mean, spec.preprocess.std)])


@pytest.fixture(scope="module")
def alexnet() -> tuple[archspec.Spec, torch.nn.Module]:
    """AlexNet (which declares ten-crop TTA), its last layer scaled so that the softmax is far from uniform
    and each view gets a clearly different answer: a wrong crop would show."""
    spec = archspec.load(SPECS / "alexnet.yaml")
    torch.manual_seed(0)
    model = archspec.build(spec).eval()
    with torch.no_grad():
        model.fc8.weight.mul_(300.0)
    return spec, model


# -- preprocessing -----------------------------------------------------------------------------------

@pytest.mark.parametrize("size, mode", [((320, 240), "RGB"), ((240, 333), "RGB"), ((300, 300), "L"), ((257, 400), "RGBA")])
def test_preprocess_equals_torchvision_eval_transform(tmp_path: Path, size: tuple[int, int], mode: str) -> None:
    spec = archspec.load(SPECS / "resnet18.yaml")
    image = Image.open(photo(tmp_path / "x.png", size, mode))
    ours = preprocess(image, spec)
    theirs = torchvision_eval(spec, 256)(image.convert("RGB"))
    assert ours.shape == (3, 224, 224)
    assert torch.equal(ours, theirs)


def test_resize_follows_the_spec() -> None:
    assert resize_size(archspec.load(SPECS / "resnet50.yaml")) == 256
    assert resize_size(archspec.load(SPECS / "inception_v3.yaml")) == 342  # 299 / 0.875, torchvision's value
    assert resize_size(archspec.load(SPECS / "resnet50.yaml", overrides={"preprocess.resize": 288})) == 288
    alexnet = archspec.load(SPECS / "alexnet_original.yaml")
    assert (alexnet.tta.mode, alexnet.tta.resize, resize_size(alexnet, tta=True)) == ("ten_crop", 256, 256)


# -- test-time augmentation -----------------------------------------------------------------------------

def test_alexnet_specs_declare_ten_crop() -> None:
    for name in ("alexnet", "alexnet_original"):
        tta = archspec.load(SPECS / f"{name}.yaml").tta
        assert (tta.mode, tta.resize, tta.views) == ("ten_crop", 256, 10)


def test_ten_crop_equals_a_manual_average_over_torchvision_tencrop(tmp_path: Path, alexnet) -> None:
    from torchvision.transforms import v2

    spec, model = alexnet
    image = Image.open(photo(tmp_path / "x.jpg", (400, 300)))
    x = preprocess(image, spec, tta=True)  # resized to 256, centre 256x256, normalised
    assert x.shape == (3, 256, 256)
    views = v2.TenCrop(224)(x)
    with torch.no_grad():
        probs = torch.stack([model(v[None]).softmax(-1)[0] for v in views])
        ours = archspec.with_tta(model, spec).eval()(x[None])[0]
    assert (probs - probs.mean(0)).abs().max().item() > 1e-3  # the views disagree: a wrong crop would show
    assert (ours - probs.mean(0)).abs().max().item() <= 1e-6
    assert ours.sum().item() == pytest.approx(1.0, abs=1e-5)


@pytest.mark.parametrize("mode", ["center", "flip"])
def test_center_and_flip_modes(alexnet, mode: str) -> None:
    from torchvision.transforms import v2

    spec, model = alexnet
    x = torch.randn(2, 3, 256, 250, generator=torch.Generator().manual_seed(0))
    centre = v2.CenterCrop(224)(x)
    views = [centre] if mode == "center" else [centre, v2.CenterCrop(224)(x.flip(-1))]
    with torch.no_grad():
        manual = torch.stack([model(v).softmax(-1) for v in views]).mean(0)
        ours = archspec.with_tta(model, spec, mode=mode).eval()(x)
    assert ours.shape == (2, 1000)
    assert (ours - manual).abs().max().item() <= 1e-6


def test_tta_wrapper_in_training_is_the_bare_model() -> None:
    spec = archspec.load(SPECS / "googlenet.yaml", overrides={"input.size": 64})
    model = archspec.build(spec)
    wrapped = archspec.with_tta(model)  # the spec is the model's own
    assert isinstance(wrapped, TestTimeAugmentation) and wrapped.mode == "ten_crop" and wrapped.crop == (64, 64)
    x = torch.randn(2, 3, 64, 64)
    assert len(wrapped.train()(x)) == 3  # main + two auxiliary heads, as the model returns them
    assert wrapped.eval()(torch.randn(2, 3, 80, 80)).shape == (2, 1000)
    with pytest.raises(ValueError, match="at least 64x64"):
        wrapped(torch.randn(1, 3, 60, 60))


# -- predict -------------------------------------------------------------------------------------------

def parse_predictions(out: str) -> dict[str, list[tuple[float, int, str]]]:
    result: dict[str, list[tuple[float, int, str]]] = {}
    current = None
    for line in out.splitlines():
        if not line.startswith(" "):
            current = line
            result[current] = []
        else:
            prob, index, *label = line.split(maxsplit=2)
            result[current].append((float(prob), int(index), label[0] if label else ""))
    return result


@pytest.fixture(scope="module")
def resnet18(tmp_path_factory: pytest.TempPathFactory) -> tuple[archspec.Spec, torch.nn.Module, Path]:
    spec = archspec.load(SPECS / "resnet18.yaml")
    torch.manual_seed(1)
    model = archspec.build(spec).eval()
    with torch.no_grad():
        model.fc.weight.mul_(20.0)  # a confident classifier: distinct top-k probabilities
    weights = tmp_path_factory.mktemp("weights") / "resnet18.pth"
    torch.save(model.state_dict(), weights)
    return spec, model, weights


def test_predict_end_to_end(tmp_path: Path, resnet18, capsys: pytest.CaptureFixture[str]) -> None:
    spec, model, weights = resnet18
    images = [photo(tmp_path / "wide.png", (320, 240)), photo(tmp_path / "tall.jpg", (200, 300))]
    labels = tmp_path / "labels.txt"
    labels.write_text("".join(f"class number {i}\n" for i in range(1000)))
    assert run_cli(["predict", str(SPECS / "resnet18.yaml"), "--weights", str(weights), *map(str, images),
                    "--topk", "3", "--labels", str(labels), "--batch-size", "1"]) == 0
    captured = capsys.readouterr()
    assert "missing 0, unexpected 0, mismatched 0" in captured.err
    got = parse_predictions(captured.out)
    assert list(got) == [str(p) for p in images]
    for path in images:
        x = torchvision_eval(spec, 256)(Image.open(path).convert("RGB"))
        with torch.no_grad():
            probs = model(x[None]).softmax(-1)[0]
        top = probs.topk(3)
        assert [i for _, i, _ in got[str(path)]] == top.indices.tolist()
        assert [p for p, _, _ in got[str(path)]] == pytest.approx(top.values.tolist(), abs=1e-4)
        assert [name for _, _, name in got[str(path)]] == [f"class number {i}" for i in top.indices.tolist()]


def test_predict_with_tta(tmp_path: Path, resnet18, capsys: pytest.CaptureFixture[str]) -> None:
    """--tta on a spec that declares none: ten crops of the image resized to 224 / 0.875 = 256."""
    from torchvision import transforms

    spec, model, weights = resnet18
    image = photo(tmp_path / "x.png", (300, 260))
    assert run_cli(["predict", str(SPECS / "resnet18.yaml"), "--weights", str(weights), str(image), "--tta"]) == 0
    captured = capsys.readouterr()
    assert "tta: ten_crop (10 views of 224x224, resized to 256)" in captured.err
    got = parse_predictions(captured.out)[str(image)]
    x = torchvision_eval(spec, 256, crop=256)(Image.open(image).convert("RGB"))
    with torch.no_grad():
        probs = torch.stack([model(v[None]).softmax(-1)[0] for v in transforms.TenCrop(224)(x)]).mean(0)
    top = probs.topk(5)
    assert [i for _, i, _ in got] == top.indices.tolist()
    assert [p for p, _, _ in got] == pytest.approx(top.values.tolist(), abs=1e-4)


def test_predict_progress_over_many_images(tmp_path: Path, resnet18, capsys: pytest.CaptureFixture[str]) -> None:
    spec, model, weights = resnet18
    images = [str(photo(tmp_path / f"{i}.png", (230 + 9 * i, 240))) for i in range(5)]
    assert run_cli(["predict", str(SPECS / "resnet18.yaml"), "--weights", str(weights), *images,
                    "--topk", "1", "--batch-size", "2"]) == 0
    got = parse_predictions(capsys.readouterr().out)
    assert list(got) == images and all(len(v) == 1 for v in got.values())


@pytest.mark.parametrize("case", ["missing image", "unreadable image", "wrong weights", "not weights",
                                  "missing weights", "labels", "spec error"])
def test_predict_errors_are_one_line(tmp_path: Path, resnet18, capsys: pytest.CaptureFixture[str], case: str) -> None:
    _, _, weights = resnet18
    image = str(photo(tmp_path / "ok.png"))
    broken = tmp_path / "broken.jpg"
    broken.write_text("not an image")
    spec, expect = str(SPECS / "resnet18.yaml"), 1
    args = {"missing image": [spec, "--weights", str(weights), image, str(tmp_path / "nope.png")],
            "unreadable image": [spec, "--weights", str(weights), image, str(broken)],
            "wrong weights": [str(SPECS / "resnet34.yaml"), "--weights", str(weights), image],
            "not weights": [spec, "--weights", str(broken), image],
            "missing weights": [spec, "--weights", str(tmp_path / "none.pth"), image],
            "labels": [spec, "--weights", str(weights), image, "--labels", str(broken)],
            "spec error": [spec, "--weights", str(weights), image, "--set", "layers.fc.outt=3"]}[case]
    if case in ("spec error", "missing image", "unreadable image", "labels"):  # bad input: exit 2
        expect = 2
    assert run_cli(["predict", *args]) == expect
    err = [line for line in capsys.readouterr().err.splitlines() if not line.startswith("weights: ")]
    assert len(err) == 1, err
    message = {"missing image": "no such image: ", "unreadable image": "cannot read image ",
               "wrong weights": "do not fit resnet34", "not weights": "cannot read weights from",
               "missing weights": "no such weights file", "labels": "has 1 labels but the network has 1000 classes",
               "spec error": "'outt' is not a field of linear; did you mean 'out'?"}[case]
    assert message in err[0]


# -- weights from a torchvision state_dict file ----------------------------------------------------------

def test_torchvision_resnet50_state_dict_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import torchvision

    torch.manual_seed(0)
    reference = torchvision.models.resnet50(weights=None).eval()
    with torch.no_grad():
        for m in reference.modules():  # trained-like BN statistics, so that a swapped tensor would show
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 1.5)
        reference.fc.weight.mul_(10.0)
    path = tmp_path / "resnet50-torchvision.pth"
    torch.save(reference.state_dict(), path)

    model = archspec.build(SPECS / "resnet50.yaml", weights=path).eval()
    assert model.transfer_report.ok and len(model.transfer_report.transferred) == len(reference.state_dict())
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))  # predict below runs at 224
    with torch.no_grad():
        assert (model(x) - reference(x)).abs().max().item() <= 1e-4

    image = photo(tmp_path / "x.jpg", (350, 280))
    assert run_cli(["predict", str(SPECS / "resnet50.yaml"), "--weights", str(path), str(image)]) == 0
    captured = capsys.readouterr()
    assert "transferred 320 tensors" in captured.err
    got = parse_predictions(captured.out)[str(image)]
    pixels = torchvision_eval(archspec.load(SPECS / "resnet50.yaml"), 256)(Image.open(image).convert("RGB"))
    with torch.no_grad():
        top = reference(pixels[None]).softmax(-1)[0].topk(5)
    assert [i for _, i, _ in got] == top.indices.tolist()
    assert [p for p, _, _ in got] == pytest.approx(top.values.tolist(), abs=1e-4)
