#!/usr/bin/env python3
"""`python cli.py COMMAND ...`: the same as the installed `archspec` command."""
import sys

from archspec.cli import main

if __name__ == "__main__":
    sys.exit(main())
