"""The Python API's entries take a spec the same way (spec.as_spec): a path with its overrides, variant and
phi, or a loaded Spec, which is final."""
from __future__ import annotations

from functools import partial
from typing import Any, Callable

import pytest

import archspec
from archspec.tools.bench import bench
from archspec.language.spec import as_spec
from archspec.tools.train import train
from conftest import SPECS

ENTRIES: dict[str, Callable[..., Any]] = {
    "build": archspec.build, "export": partial(archspec.export, format="python"), "train": train, "bench": bench,
}


@pytest.mark.parametrize("name", ENTRIES)
@pytest.mark.parametrize("extra", [{"overrides": {"layers.fc.out": 10}}, {"variant": "b1"}, {"phi": 1.0}])
def test_a_loaded_spec_is_final(name: str, extra: dict[str, Any]) -> None:
    """bench used to drop the overrides it was given with a Spec; every entry refuses them alike."""
    spec = archspec.load(SPECS / "resnet18.yaml")
    with pytest.raises(ValueError, match="apply to a spec file"):
        ENTRIES[name](spec, **extra)


def test_a_path_takes_its_overrides() -> None:
    spec = as_spec(SPECS / "resnet18.yaml", {"layers.fc.out": 10})
    assert spec.output_shape == (10,) and as_spec(spec) is spec
    assert archspec.summary(SPECS / "resnet18.yaml").params == archspec.load(SPECS / "resnet18.yaml").params
