"""Test set-up: 8 CPU devices and a persistent compile cache, before anything imports JAX."""

import os
from pathlib import Path

import pytest

_flags = os.environ.get("XLA_FLAGS", "")
if "xla_force_host_platform_device_count" not in _flags:
    os.environ["XLA_FLAGS"] = (_flags + " --xla_force_host_platform_device_count=8").strip()
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax  # noqa: E402  (must come after XLA_FLAGS)

jax.config.update(
    "jax_compilation_cache_dir",
    os.environ.get("FLOWJAX_JAX_CACHE", str(Path.home() / ".cache" / "flowjax" / "jax")),
)
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.2)

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real flow files beside the repository; skips the test where they are absent."""
    if not SHARED_DATA.is_dir() or not any(SHARED_DATA.glob("*.csv.gz")):
        pytest.skip(f"real flow files not found at {SHARED_DATA} (../shared/data is absent)")
    return SHARED_DATA
