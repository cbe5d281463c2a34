"""Timestamps: each flow-log format detected, parsed to known epochs and written back exactly."""

import numpy as np
import pandas as pd
import pytest

from flowjax import timefmt

TEXT_CASES = {
    "iso": (["2026-11-23 00:27:23", "2026-11-23 13:01:02"], "%Y-%m-%d %H:%M:%S", 0),
    "iso_t_fraction_z": (
        ["2026-11-23T00:27:23.048460Z", "2026-11-24T09:00:00.000001Z"],
        "%Y-%m-%dT%H:%M:%SZ",
        6,
    ),
    "argus": (["2011/08/16 10:40:00.048460", "2011/08/16 10:41:07.000000"], "%Y/%m/%d %H:%M:%S", 6),
    "cic2017": (["7/7/2017 12:59", "7/7/2017 1:00", "7/10/2017 10:05"], "%-m/%-d/%Y %-I:%M", 0),
    "cic2017_seconds": (["7/7/2017 3:30:21", "7/7/2017 3:31:00"], "%-m/%-d/%Y %-I:%M:%S", 0),
    "cic2018": (["02/03/2018 08:47:38", "02/03/2018 10:00:00"], "%d/%m/%Y %H:%M:%S", 0),
    "day_over_12": (["14/02/2018 08:47:38", "02/03/2018 10:00:00"], "%d/%m/%Y %H:%M:%S", 0),
    "month_first": (["02/13/2018 08:47:38", "02/03/2018 10:00:00"], "%m/%d/%Y %H:%M:%S", 0),
    "unpadded_24h": (["7/7/2017 15:30", "7/7/2017 3:30"], "%-m/%-d/%Y %-H:%M", 0),
}


@pytest.mark.parametrize("name", list(TEXT_CASES))
def test_text_formats_detected_and_round_trip_exactly(name):
    strings, pattern, decimals = TEXT_CASES[name]
    values = pd.Series([*strings, None])
    fmt = timefmt.detect(values)
    assert fmt == timefmt.TimeFormat("text", pattern, False, decimals)
    seconds = timefmt.parse(values, fmt)
    assert np.isnan(seconds[-1]) and np.isfinite(seconds[:-1]).all()
    assert list(timefmt.format(seconds, fmt)) == [*strings, None]


@pytest.mark.parametrize(
    "text, expected",
    [
        ("7/7/2017 1:00", 1499389200),  # CIC 12-hour clock read as written: 01:00 UTC
        ("7/7/2017 12:59", 1499432340),
        ("7/8/2017 3:30", 1499484600),  # ambiguous and unpadded: month first (CIC-IDS2017)
        ("02/03/2018 08:47:38", 1519980458),  # ambiguous, padded, seconds: day first (2018)
        ("2011/08/16 10:40:00.048460", 1313491200.04846),
        ("2026-11-23 00:27:23", 1795393643),
    ],
)
def test_parse_gives_hand_computed_epoch_seconds(text, expected):
    values = pd.Series([text])
    assert timefmt.parse(values, timefmt.detect(values))[0] == pytest.approx(expected, abs=1e-6)


def test_microsecond_epoch_floats_round_trip_exactly():
    rng = np.random.default_rng(0)
    micros = np.append(rng.integers(1_300_000_000, 1_700_000_000, 10_000) * 10**6, 0)
    micros = (micros + rng.integers(0, 10**6, len(micros))).astype(np.float64)
    micros[-1] = 1458298072364000.0
    values = pd.Series(micros)
    fmt = timefmt.detect(values)
    assert fmt == timefmt.TimeFormat("epoch", "us", False, 0)
    back = timefmt.format(timefmt.parse(values, fmt), fmt)
    assert back.dtype == np.float64 and np.array_equal(back, micros)


def test_integer_millisecond_epochs_stay_integers():
    values = pd.Series([1458298072364, 1458298072365, 1458298099999])
    fmt = timefmt.detect(values)
    assert fmt == timefmt.TimeFormat("epoch", "ms", True, 0)
    seconds = timefmt.parse(values, fmt)
    assert seconds[0] == pytest.approx(1458298072.364, abs=1e-9)
    back = timefmt.format(seconds, fmt)
    assert back.dtype == np.int64 and np.array_equal(back, values.to_numpy())


def test_epoch_text_keeps_its_written_decimals():
    fmt = timefmt.detect(pd.Series(["1331901000.000000", "1331901000.123456"]))
    assert fmt == timefmt.TimeFormat("epoch", "s", False, 6)
    assert timefmt.resolution(fmt) == pytest.approx(1e-6)


@pytest.mark.parametrize(
    "values",
    [
        pd.Series(["hello", "world"]),
        pd.Series([1, 2, 3, 80, 443]),
        pd.Series([0.5, 1.25]),
        pd.Series(["7/7/2017 3:30", "07/7/2017 3:30"]),  # mixed padding cannot be written back
        pd.Series(["02/30/2018 08:47:38"]),  # no such day
        pd.Series([True, False]),
        pd.Series([None, None], dtype=object),
    ],
)
def test_detect_returns_none_for_other_columns(values):
    assert timefmt.detect(values) is None


def test_format_rounds_to_the_resolution():
    base = 1499389200.0  # 7/7/2017 1:00
    minutes = timefmt.TimeFormat("text", "%-m/%-d/%Y %-I:%M", False, 0)
    assert list(timefmt.format(np.array([base + 29, base + 31, base + 13 * 3600]), minutes)) == [
        "7/7/2017 1:00",
        "7/7/2017 1:01",
        "7/7/2017 2:00",
    ]
    seconds = timefmt.TimeFormat("text", "%Y-%m-%d %H:%M:%S", False, 0)
    assert list(timefmt.format(np.array([base + 0.4, base + 0.6]), seconds)) == [
        "2017-07-07 01:00:00",
        "2017-07-07 01:00:01",
    ]
    micros = timefmt.TimeFormat("text", "%Y/%m/%d %H:%M:%S", False, 6)
    assert list(timefmt.format(np.array([base + 0.0000104, base + 0.9999996]), micros)) == [
        "2017/07/07 01:00:00.000010",
        "2017/07/07 01:00:01.000000",
    ]
    epoch = timefmt.TimeFormat("epoch", "ms", True, 0)
    assert list(timefmt.format(np.array([base + 0.0004, base + 0.0006]), epoch)) == [
        1499389200000,
        1499389200001,
    ]


def test_resolution_and_dict_round_trip():
    cases = {
        timefmt.TimeFormat("text", "%-m/%-d/%Y %-I:%M", False, 0): 60.0,
        timefmt.TimeFormat("text", "%d/%m/%Y %H:%M:%S", False, 0): 1.0,
        timefmt.TimeFormat("text", "%Y/%m/%d %H:%M:%S", False, 6): 1e-6,
        timefmt.TimeFormat("epoch", "us", False, 0): 1e-6,
        timefmt.TimeFormat("epoch", "s", True, 0): 1.0,
    }
    for fmt, step in cases.items():
        assert timefmt.resolution(fmt) == pytest.approx(step)
        assert timefmt.TimeFormat.from_dict(fmt.to_dict()) == fmt


def test_parse_names_the_first_bad_row():
    fmt = timefmt.TimeFormat("text", "%Y-%m-%d %H:%M:%S", False, 0)
    values = pd.Series(["2026-11-23 00:27:23", "2026-11-23 25:00:00"], index=[10, 11])
    with pytest.raises(ValueError, match="row 11"):
        timefmt.parse(values, fmt)
    with pytest.raises(ValueError):
        timefmt.TimeFormat("epoch", "minutes", True, 0)


def test_many_text_timestamps_round_trip():
    seconds = np.random.default_rng(1).uniform(1.3e9, 1.7e9, 200_000)
    fmt = timefmt.TimeFormat("text", "%-m/%-d/%Y %-I:%M:%S", False, 6)
    text = pd.Series(timefmt.format(seconds, fmt))
    assert timefmt.detect(text) == fmt
    assert np.array_equal(timefmt.format(timefmt.parse(text, fmt), fmt), text.to_numpy())
