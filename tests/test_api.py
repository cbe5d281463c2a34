"""The README's Python API example runs as written, and its promises hold."""

import re
from pathlib import Path

import pandas as pd

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_api_example_runs(tmp_path, monkeypatch):
    text = README.read_text()
    section = text[text.index("## Python API") :]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    monkeypatch.chdir(tmp_path)
    scope: dict = {}
    exec(compile(code, str(README), "exec"), scope)  # noqa: S102 - our own README
    real, flows, ssh = scope["real"], scope["flows"], scope["ssh"]
    assert list(flows.columns) == [c for c in real.columns if c in flows.columns]
    assert len(flows) == 1000 and flows["label"].value_counts().nunique() <= 2  # uniform
    assert (ssh["label"] == "BruteForce-SSH").all()
    again = scope["again"].sample(50, seed=3)
    pd.testing.assert_frame_equal(again, scope["synth"].sample(50, seed=3))
    assert not (tmp_path / "runs" / "api_demo" / "data").exists()  # no training rows saved
    assert scope["report"].value("utility", "TSTR macro-F1") is not None
