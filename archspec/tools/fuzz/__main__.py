"""`python -m archspec.tools.fuzz SPEC... [--cases N] [--jobs J]`"""
from . import main

raise SystemExit(main())
