"""What a spec declares about its inputs: preprocessing (resize, crop, normalisation) and test-time
augmentation. Pure data here; the image and tensor work lives in the modules that use torch."""
from __future__ import annotations

from typing import Annotated, Any, Literal, Protocol

from pydantic import BeforeValidator, ConfigDict

from .blocks.base import PosInt
from .model import SpecModel

Triple = tuple[float, float, float]
IMAGENET_CROP_RATIO = 0.875  # 224 / 256: the usual ImageNet evaluation crop


class Preprocess(SpecModel):
    """Resize the shorter side to `resize`, centre-crop to the spec's input size, scale to [0, 1],
    then normalise with `mean` and `std` (ImageNet's, by default)."""

    model_config = ConfigDict(extra="forbid")

    resize: PosInt | None = None  # default: the input size / 0.875 (see resize_size)
    interpolation: Literal["bilinear", "bicubic", "nearest"] = "bilinear"
    mean: Triple = (0.485, 0.456, 0.406)
    std: Triple = (0.229, 0.224, 0.225)


def _tta_shorthand(value: Any) -> Any:
    return {"mode": value} if isinstance(value, str) else value


class TTA(SpecModel):
    """Test-time augmentation: `center` (one crop), `flip` (the crop and its mirror), `ten_crop` (four
    corners and the centre, each also mirrored; Krizhevsky et al. 2012, Section 4.1). The softmax of the
    views is averaged. Crops have the spec's input size, taken from the image resized to `resize`."""

    model_config = ConfigDict(extra="forbid")

    mode: Literal["center", "flip", "ten_crop"] = "ten_crop"
    resize: PosInt | None = None  # default: preprocess.resize

    @property
    def views(self) -> int:
        return {"center": 1, "flip": 2, "ten_crop": 10}[self.mode]


TTASpec = Annotated[TTA, BeforeValidator(_tta_shorthand)]


class Declares(Protocol):
    """What resize_size reads of a Spec (spec.py imports this module, so not the Spec class itself)."""

    preprocess: Preprocess
    tta: TTA | None
    input: Any


def resize_size(spec: Declares, tta: bool = False) -> int:
    """The shorter side images are resized to: `tta.resize` with TTA (when declared), else
    `preprocess.resize`. A spec that declares neither gets the ImageNet convention, the input size
    / 0.875 (256 for 224, 342 for Inception-v3's 299)."""
    if tta and spec.tta is not None and spec.tta.resize is not None:
        return spec.tta.resize
    if spec.preprocess.resize is not None:
        return spec.preprocess.resize
    return int(round(min(spec.input.shape[1:]) / IMAGENET_CROP_RATIO))
