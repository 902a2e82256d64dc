#!/usr/bin/env python3
"""`python cli.py COMMAND ...`: the same as the installed `archspec` command."""
import sys

try:
    from archspec.cli import main
except ModuleNotFoundError as exc:  # archspec's dependencies are not installed for this interpreter
    sys.exit(f"archspec: needs the Python package '{exc.name}', which {sys.executable} lacks; "
             "`pip install -e .` installs archspec's dependencies (the README's first lines set up a venv)")

if __name__ == "__main__":
    sys.exit(main())
