"""Tests of flowjax.eval on generated tables whose right answer is known."""

import json

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from flowjax.eval import evaluate, write_report
from flowjax.eval.coverage import manifold_scores
from flowjax.eval.features import infer_columns
from flowjax.eval.fidelity import ks_statistic
from flowjax.eval.inliers import TITLES

N = 1500
_MEANS = np.array([[0, 0, 0, 0], [3, 3, -2, 1], [-3, 2, 3, -1]], float)
_COV = np.array([[1, 0.8, 0.3, 0], [0.8, 1, 0.2, 0], [0.3, 0.2, 1, 0.5], [0, 0, 0.5, 1]])


def mixture(n: int, seed: int) -> pd.DataFrame:
    """Three correlated Gaussian classes, a heavy-tailed column and a class-dependent category."""
    rng = np.random.default_rng(seed)
    k = rng.integers(0, 3, n)
    x = _MEANS[k] + rng.multivariate_normal(np.zeros(4), _COV, n)
    frame = pd.DataFrame(x, columns=["a", "b", "c", "d"])
    frame["bytes_out"] = np.exp(x[:, 0] + rng.normal(0, 0.3, n))
    frame["proto"] = np.where(rng.random(n) < 0.8 - 0.3 * k, "tcp", np.where(k == 2, "udp", "icmp"))
    frame["Label"] = np.array(["A", "B", "C"])[k]
    return frame


def both(report, section: str, metric: str) -> tuple[float, float]:
    """(synthetic, reference) values of one headline metric."""
    return report.value(section, metric), report.value(section, metric, "reference")


@pytest.fixture(scope="module")
def real():
    return mixture(N, 0), mixture(N, 1)


@pytest.fixture(scope="module")
def same_distribution(real):
    train, holdout = real
    synthetic = mixture(N, 2)
    return evaluate(train, holdout, synthetic, seed=0), synthetic


def test_same_distribution_scores_like_the_reference(same_distribution):
    report, _ = same_distribution
    auc = report.value("detection", "detection ROC AUC")
    assert auc < 0.6
    assert report.value("fidelity", "column shape (1-KS / 1-TVD)") > 0.95
    assert 0.9 < report.value("utility", "TSTR / TRTR macro-F1") < 1.1
    inl, inl_ref = both(report, "inliers", TITLES["robust_rbf"])
    assert abs(inl - inl_ref) < 5
    recall, recall_ref = both(report, "coverage", "k-NN recall")
    assert abs(recall - recall_ref) < 0.05
    assert 0.4 < report.value("privacy", "share closer to train than holdout") < 0.6
    assert not [f for f in report.flags if "collapse" in f or "memorisation" in f]


def test_report_is_json_safe_and_complete(same_distribution):
    report, _ = same_distribution
    d = json.loads(json.dumps(report.to_dict(), allow_nan=False))
    assert set(d["sections"]) == {
        "fidelity", "detection", "coverage", "inliers", "utility", "privacy", "validity",
        "network",  # the tables have a protocol column
    }  # fmt: skip
    assert d["columns"]["label"] == "Label"
    assert set(d["columns"]["categorical"]) == {"proto", "Label"}
    rows = report.headline()
    assert all({"metric", "synthetic", "reference", "note"} <= set(r) for r in rows)
    per_class = d["sections"]["utility"]["details"]["tstr"]["per_class_f1"]
    assert set(per_class) == {"A", "B", "C"}
    md = report.to_markdown()
    assert "| metric | synthetic | real reference | note |" in md
    assert "detection ROC AUC" in md


def test_shuffled_columns_keep_shapes_but_break_the_joint(real):
    train, holdout = real
    rng = np.random.default_rng(3)
    shuffled = mixture(N, 2)
    for c in shuffled.columns:
        shuffled[c] = rng.permutation(shuffled[c].to_numpy())
    report = evaluate(train, holdout, shuffled, sections=("fidelity", "detection"))
    assert report.value("fidelity", "column shape (1-KS / 1-TVD)") > 0.95
    corr, corr_ref = both(report, "fidelity", "correlation difference (mean abs Δρ)")
    assert corr > 0.2 and corr > 5 * corr_ref
    pairs, pairs_ref = both(report, "fidelity", "pairwise trends (1-TVD)")
    assert pairs < pairs_ref - 0.1
    assert report.value("detection", "detection ROC AUC") > 0.85
    assert report.value("detection", "detection ROC AUC", "reference") < 0.6


def test_only_typical_rows_are_flagged_as_mode_collapse(real):
    train, holdout = real
    big = mixture(6 * N, 4)
    k = big["Label"].map({"A": 0, "B": 1, "C": 2}).to_numpy()
    spread = np.linalg.norm(big[["a", "b", "c", "d"]].to_numpy() - _MEANS[k], axis=1)
    typical = big.iloc[np.argsort(spread)[:N]].reset_index(drop=True)
    report = evaluate(train, holdout, typical, sections=("coverage", "inliers"))
    inl, inl_ref = both(report, "inliers", TITLES["robust_rbf"])
    assert inl > inl_ref + 5
    recall, recall_ref = both(report, "coverage", "k-NN recall")
    assert recall < 0.6 * recall_ref
    assert any("mode collapse" in f for f in report.flags)


def test_copies_of_training_rows_raise_the_privacy_alarm(real):
    train, holdout = real
    copies = train.sample(N, replace=True, random_state=0).reset_index(drop=True)
    report = evaluate(train, holdout, copies, sections=("privacy",))
    assert report.value("privacy", "exact copies of train rows %") == pytest.approx(100.0)
    assert report.value("privacy", "exact copies of train rows %", "reference") < 1.0
    assert report.value("privacy", "DCR median (scaled)") < 1e-6
    assert report.value("privacy", "share closer to train than holdout") > 0.65
    assert report.value("privacy", "membership-inference AUC") > 0.7
    assert any("memorisation" in f for f in report.flags)
    assert any("copy a training row" in f for f in report.flags)


def test_nonfinite_cells_are_counted_and_do_not_break_metrics(real):
    train, holdout = real
    train, synthetic = train.copy(), mixture(N, 2)
    train.loc[:9, "bytes_out"] = np.inf
    synthetic.loc[:19, "a"] = np.nan
    synthetic.loc[20:24, "bytes_out"] = -np.inf
    report = evaluate(train, holdout, synthetic, sections=("fidelity", "coverage", "privacy"))
    assert report.nonfinite["train"] == {"bytes_out": 10}
    assert report.nonfinite["synthetic"] == {"a": 20, "bytes_out": 5}
    assert all(np.isfinite(r["synthetic"]) for r in report.headline())
    assert any("NaN/inf" in w for w in report.warnings)


def test_columns_missing_from_a_table_and_identifiers_are_dropped(real):
    train, holdout = real
    train, holdout = (
        train.assign(**{"Src IP": "10.0.0.1"}),
        holdout.assign(**{"Src IP": "10.0.0.2"}),
    )
    synthetic = mixture(N, 2).drop(columns=["d"]).assign(**{"Src IP": "10.0.0.3", "extra": 1.0})
    cols = infer_columns(train, holdout, synthetic)
    assert cols.dropped["d"] == "missing from synthetic"
    assert cols.dropped["extra"] == "missing from train, holdout"
    assert cols.dropped["Src IP"].startswith("identifier")
    assert "d" not in cols.numeric + cols.categorical


def test_categorical_and_label_inference_uses_canonical_names():
    rng = np.random.default_rng(0)
    n = 300
    frame = pd.DataFrame(
        {
            "Protocol": rng.choice([6, 17], n),
            "Destination Port": rng.integers(0, 65536, n),
            "Flow Duration": rng.exponential(1e5, n),
            "Bwd PSH Flags": np.zeros(n),
            " Label": rng.choice(["BENIGN", "DoS"], n),
        }
    )
    cols = infer_columns(frame, frame, frame)
    assert cols.label == " Label"
    assert set(cols.categorical) == {"Protocol", " Label"}
    assert set(cols.numeric) == {"Destination Port", "Flow Duration"}
    assert cols.dropped["Bwd PSH Flags"].startswith("constant")
    with pytest.raises(ValueError, match="nope"):
        infer_columns(frame, frame, frame, categorical=["nope"])


def test_manifold_scores_on_known_sets():
    rng = np.random.default_rng(0)
    real = rng.normal(size=(800, 3))
    same = manifold_scores(real, rng.normal(size=(800, 3)))
    assert same["precision"] > 0.9 and same["recall"] > 0.9
    centre = real[np.linalg.norm(real, axis=1) < 0.8]
    collapsed = manifold_scores(real, centre)
    assert collapsed["precision"] > 0.95 and collapsed["recall"] < 0.4
    far = manifold_scores(real, rng.normal(size=(800, 3)) + 10)
    assert far["precision"] == 0.0 and far["coverage"] == 0.0


def test_ks_statistic_matches_scipy():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=500), rng.normal(0.3, 1, size=700).round(1)
    assert ks_statistic(a, b) == pytest.approx(stats.ks_2samp(a, b).statistic)


def test_write_report_writes_json_markdown_and_pngs(same_distribution, real, tmp_path):
    report, synthetic = same_distribution
    train, holdout = real
    paths = write_report(
        report, tmp_path / "out", train=train, holdout=holdout, synthetic=synthetic
    )
    names = {p.name for p in paths}
    assert {"report.json", "report.md", "marginals.png", "correlation_difference.png",
            "tstr_per_class.png"} <= names  # fmt: skip
    assert json.loads((tmp_path / "out" / "report.json").read_text())["n_rows"]["synthetic"] == N
    for p in paths:
        if p.suffix == ".png":
            assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not list((tmp_path / "out").glob("*.tmp"))


def test_bad_inputs_raise_errors_that_name_the_problem(real):
    train, holdout = real
    with pytest.raises(ValueError, match="synthetic has 3 rows"):
        evaluate(train, holdout, train.head(3))
    with pytest.raises(ValueError, match="unknown sections"):
        evaluate(train, holdout, train, sections=("fidelity", "vibes"))
    with pytest.raises(ValueError, match="unknown OCSVM protocol"):
        evaluate(train, holdout, train, sections=("inliers",), ocsvm_protocols=("sigmoid",))
