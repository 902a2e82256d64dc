"""The block registry: the type `x` lives in blocks/x.py, and a block module is imported only when a spec uses it."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import archspec.language.blocks as blocks
from archspec.ir.activations import ACTIVATIONS
from archspec.language.blocks.registry import BLOCK_TYPES, MODULES, models_in, type_names
from conftest import ROOT

HELPERS = {"__init__", "anyblock", "aux_head", "base", "defined", "registry"}  # block modules that define no type


def test_each_block_file_defines_the_types_named_after_it() -> None:
    files = {path.stem for path in Path(blocks.__file__).parent.glob("*.py")}
    assert files - HELPERS == set(MODULES), "a block file missing from registry.MODULES, or a name without a file"
    for module in MODULES:
        names = [name for model in models_in(module) for name in type_names(model)]
        assert names == (list(ACTIVATIONS) if module == "activation" else [module]), module
        assert all(BLOCK_TYPES[name].__module__ == f"archspec.language.blocks.{module}" for name in names)
    assert len(BLOCK_TYPES) == len(set(BLOCK_TYPES)) == len(MODULES) - 1 + len(ACTIVATIONS)


def test_a_spec_imports_only_the_block_modules_it_uses() -> None:
    code = ("import sys, archspec\n"
            "spec = archspec.load('specs/vgg11.yaml')\n"
            "print(sorted({n.block.type for n in spec.analyse().walk()}))\n"
            "print(sorted(m.rsplit('.', 1)[1] for m in sys.modules if m.startswith('archspec.language.blocks.')))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    used, imported = (eval(line) for line in out.splitlines())  # noqa: S307 (two printed lists of names)
    module_of = {name: "activation" if name in ACTIVATIONS else name for name in used}
    assert set(imported) - HELPERS == {module_of[name] for name in used if name in BLOCK_TYPES}
    assert "mbconv" not in imported and "regnet" not in imported
