"""`python -m archspec.cli COMMAND ...`"""
import sys

from .commands import main

sys.exit(main())
