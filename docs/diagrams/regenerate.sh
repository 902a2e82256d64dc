#!/usr/bin/env sh
# Regenerate docs/diagrams/: an SVG of every bundled spec at block detail.
cd "$(dirname "$0")/../.." || exit 1
exec "${PYTHON:-.venv/bin/python}" cli.py diagram specs/*.yaml --detail block -o docs/diagrams/
