"""Thin absl entry points over the flowjax library."""

from pathlib import Path

# The real flow files beside the repository (../shared/data), the scripts' default inputs.
SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
