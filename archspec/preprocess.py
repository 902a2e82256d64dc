"""What a spec declares about its inputs: preprocessing (resize, crop, normalisation) and test-time
augmentation. Pure data here; the image and tensor work lives in the modules that use torch."""
from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from .blocks.base import PosInt

Triple = tuple[float, float, float]


class Preprocess(BaseModel):
    """Resize the shorter side to `resize`, centre-crop to the spec's input size, scale to [0, 1],
    then normalise with `mean` and `std` (ImageNet's, by default)."""

    model_config = ConfigDict(extra="forbid")

    resize: PosInt = 256
    interpolation: Literal["bilinear", "bicubic", "nearest"] = "bilinear"
    mean: Triple = (0.485, 0.456, 0.406)
    std: Annotated[Triple, Field()] = (0.229, 0.224, 0.225)


def _tta_shorthand(value: Any) -> Any:
    return {"mode": value} if isinstance(value, str) else value


class TTA(BaseModel):
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
