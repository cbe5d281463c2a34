"""flowjax: synthetic network-flow records from sequence models over symbolised flows.

The public names are imported lazily so that `import flowjax.eval` (numpy,
pandas and scikit-learn only) never loads JAX.
"""

import importlib

__version__ = "0.1.0"

_EXPORTS = {
    "load_flows": "flowjax.io",
    "FlowTokenizer": "flowjax.tokenizer",
    "train_and_evaluate": "flowjax.train",
    "load_generator": "flowjax.generate",
    "generate": "flowjax.generate",
    "evaluate": "flowjax.eval",
    "FlowSynthesizer": "flowjax.synthesizer",
}

__all__ = [*_EXPORTS, "__version__"]


def __getattr__(name: str):
    if name == "datasets":
        return importlib.import_module("flowjax.datasets")
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'flowjax' has no attribute {name!r}")
