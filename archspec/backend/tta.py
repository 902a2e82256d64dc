"""Inference-time inputs: the spec's preprocessing of an image and its test-time augmentation (TTA).

    spec = archspec.load("specs/alexnet.yaml")               # declares tta: {mode: ten_crop, resize: 256}
    model = archspec.with_tta(archspec.build(spec, weights="alexnet.pth"), spec).eval()
    x = archspec.backend.tta.preprocess(Image.open("cat.jpg"), spec, tta=True)   # (3, 256, 256), normalised
    probs = model(x[None])                                    # (1, 1000): the mean softmax of 10 views

`TestTimeAugmentation` takes a batch of images already resized (shorter side to R) and centre-cropped
to R x R, with R = `tta.resize` (else the preprocessing's resize), and normalised. It cuts the views
(`center`: the centre crop; `flip`: it and its mirror; `ten_crop`: the four corners and the centre,
each also mirrored, as torchvision's `TenCrop` and Krizhevsky et al. 2012, Section 4.1), each of the
spec's input size, runs them through the model in one batch and returns the mean of their softmax.
Its output is probabilities, not logits. In training mode it is the bare model (logits, aux heads).

`preprocess` is the inference transform the spec declares (`preprocess:`): resize the shorter side,
centre-crop to the input size, scale to [0, 1], normalise with mean/std. It is exactly torchvision's
`Resize(r) -> CenterCrop(size) -> ToTensor() -> Normalize(mean, std)` on a PIL image.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from ..language.preprocess import TTA, resize_size

if TYPE_CHECKING:
    from PIL.Image import Image

    from ..language.spec import Spec


class TestTimeAugmentation(nn.Module):
    """Wraps a classifier: in eval mode, `forward(x)` with x (N, C, H, W), H and W at least the crop
    size, returns (N, classes), the softmax averaged over the views; in training mode, `model(x)`."""

    __test__ = False  # not a pytest test class, despite its name

    def __init__(self, model: nn.Module, crop: tuple[int, int], mode: str = "ten_crop") -> None:
        super().__init__()
        if mode not in ("center", "flip", "ten_crop"):
            raise ValueError(f"unknown TTA mode '{mode}' (center, flip or ten_crop)")
        self.model = model
        self.crop = (int(crop[0]), int(crop[1]))
        self.mode = mode

    def views(self, x: torch.Tensor) -> torch.Tensor:
        """(V, N, C, h, w): the views of each image, in torchvision's `TenCrop` order (the five
        crops of the image, then the five crops of its mirror image; `flip`: centre, mirrored centre)."""
        h, w = x.shape[-2:]
        ch, cw = self.crop
        if h < ch or w < cw:
            raise ValueError(f"TTA needs images of at least {ch}x{cw}, got {h}x{w}")
        top, left = int(round((h - ch) / 2.0)), int(round((w - cw) / 2.0))
        images = [x] if self.mode == "center" else [x, x.flip(-1)]
        views = []
        for image in images:
            if self.mode == "ten_crop":
                views += [image[..., :ch, :cw], image[..., :ch, w - cw:],
                          image[..., h - ch:, :cw], image[..., h - ch:, w - cw:]]
            views.append(image[..., top:top + ch, left:left + cw])
        return torch.stack(views)

    def forward(self, x: torch.Tensor) -> Any:
        if self.training:
            return self.model(x)
        views = self.views(x)
        v, n = views.shape[:2]
        logits = self.model(views.flatten(0, 1))
        return logits.softmax(-1).unflatten(0, (v, n)).mean(0)

    def extra_repr(self) -> str:
        return f"mode={self.mode!r}, crop={self.crop[0]}x{self.crop[1]}"


def tta_of(spec: "Spec", mode: str | None = None) -> TTA:
    """The spec's declared TTA, else `mode` (default ten_crop) with the preprocessing's resize."""
    declared = spec.tta
    if mode is not None and (declared is None or declared.mode != mode):
        return TTA(mode=mode, resize=declared.resize if declared else None)
    return declared or TTA(mode="ten_crop")


def with_tta(model: nn.Module, spec: "Spec | None" = None, mode: str | None = None) -> TestTimeAugmentation:
    """`model` wrapped in the test-time augmentation `spec` declares (its `tta:`), or `mode` (center,
    flip, ten_crop; ten_crop when the spec declares none). `spec` defaults to the compiled model's."""
    spec = spec if spec is not None else getattr(model, "spec", None)
    if spec is None:
        raise ValueError("with_tta needs the spec (the model has no .spec)")
    return TestTimeAugmentation(model, spec.input.shape[1:], tta_of(spec, mode).mode)


def _resample(name: str) -> int:
    from PIL import Image

    return {"bilinear": Image.BILINEAR, "bicubic": Image.BICUBIC, "nearest": Image.NEAREST}[name]


def preprocess(image: "Image", spec: "Spec", tta: bool = False) -> torch.Tensor:
    """A PIL image -> a normalised (C, H, W) float tensor as the spec declares it.

    Without TTA: resize the shorter side, centre-crop to the input size. With TTA: resize the
    shorter side to R and centre-crop to R x R (the paper's 256 x 256), for `TestTimeAugmentation`."""
    channels, height, width = spec.input.shape
    modes = {1: "L", 3: "RGB"}
    if channels not in modes:
        raise ValueError(f"images have 1 or 3 channels; the spec's input has {channels}")
    image = image.convert(modes[channels])
    size = resize_size(spec, tta)
    crop = (size, size) if tta else (height, width)
    if tta and size < max(height, width):
        raise ValueError(f"the TTA resize size {size} is smaller than the {height}x{width} crops; "
                         "raise tta.resize in the spec")
    # Resize the shorter side (torchvision's rule: the longer side is truncated, not rounded).
    w, h = image.size
    short, long = (w, h) if w <= h else (h, w)
    new_short, new_long = size, int(size * long / short)
    new_w, new_h = (new_short, new_long) if w <= h else (new_long, new_short)
    if (new_w, new_h) != (w, h):
        image = image.resize((new_w, new_h), _resample(spec.preprocess.interpolation))
    # Centre crop (torchvision's rounding of the offsets).
    ch, cw = crop
    if new_h < ch or new_w < cw:
        raise ValueError(f"the image resized to {new_w}x{new_h} (shorter side {size}) is smaller than the "
                         f"{cw}x{ch} crop; raise preprocess.resize in the spec")
    top, left = int(round((new_h - ch) / 2.0)), int(round((new_w - cw) / 2.0))
    image = image.crop((left, top, left + cw, top + ch))
    pixels = torch.frombuffer(bytearray(image.tobytes()), dtype=torch.uint8)
    x = pixels.view(ch, cw, channels).permute(2, 0, 1).float().div(255)
    mean = torch.tensor(spec.preprocess.mean[:channels]).view(-1, 1, 1)
    std = torch.tensor(spec.preprocess.std[:channels]).view(-1, 1, 1)
    return x.sub(mean).div(std)


__all__ = ["TestTimeAugmentation", "preprocess", "resize_size", "tta_of", "with_tta"]
