"""The command line: a thin shell over the API (`commands`: the parser and the torch-free commands; `args`: shared
arguments and the memory check; `inference`: predict and export; `perf`: bench and train)."""
from .commands import main

__all__ = ["main"]
