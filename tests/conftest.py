"""Shared helpers: the bundled specs and the live reference models they reproduce."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SPECS = ROOT / "specs"
sys.path.insert(0, str(ROOT))

import archspec  # noqa: E402

ALL_SPECS = sorted(SPECS.glob("*.yaml"))
REFERENCED = [p for p in ALL_SPECS if archspec.load(p, analyse=False).reference]
# Specs whose reference takes seconds to build and run at full size on 2 cores.
HEAVY = {"vgg11", "vgg11_bn", "vgg13", "vgg13_bn", "vgg16", "vgg16_bn", "vgg19", "vgg19_bn",
         "resnet152", "resnext101_32x8d", "wide_resnet50_2"}


def spec_params(paths: list[Path]) -> list:
    return [pytest.param(p, id=p.stem, marks=[pytest.mark.slow] if p.stem in HEAVY else []) for p in paths]
