"""Paired significance of a model against a baseline: hand-computed McNemar and sign-flip p-values, the
degenerate cases (no difference, a constant shift) and seeded reproducibility."""

from __future__ import annotations

import math

import numpy as np
import pytest

from jointembed.metrics.significance import (
    McNemar,
    PairedComparison,
    align_users,
    compare_per_user,
    format_comparison,
    format_comparisons,
    mcnemar_exact,
    paired_comparison,
    per_user_csv,
)


def test_mcnemar_matches_a_hand_binomial() -> None:
    # 1 user only the model hits, 6 only the baseline hits, 3 both, 2 neither: 7 discordant users.
    a = [1] * 1 + [0] * 6 + [1] * 3 + [0] * 2
    b = [0] * 1 + [1] * 6 + [1] * 3 + [0] * 2
    result = mcnemar_exact(a, b)
    # two-sided: 2 * P(X <= 1), X ~ Binomial(7, 1/2) = 2 * (1 + 7) / 128
    assert result == McNemar(1, 6, pytest.approx(16 / 128))
    assert mcnemar_exact(b, a) == McNemar(6, 1, pytest.approx(16 / 128))
    # 0 against 3: 2 * 1/8
    assert mcnemar_exact([0, 0, 0, 1], [1, 1, 1, 1]).p_value == pytest.approx(0.25)


def test_mcnemar_without_discordant_users_is_one_and_nan_users_are_dropped() -> None:
    assert mcnemar_exact([1, 0, 1], [1, 0, 1]) == McNemar(0, 0, 1.0)
    assert mcnemar_exact([1.0, math.nan, 0.0], [0.0, 1.0, 0.0]) == McNemar(1, 0, 1.0)  # 2 * 1/2, capped at 1


def test_identical_arrays_give_zero_difference_interval_and_p_one() -> None:
    a = np.random.default_rng(0).random(200)
    assert paired_comparison(a, a) == PairedComparison(0.0, 0.0, 0.0, 1.0, 200)


def test_a_constant_shift_is_exact_and_significant() -> None:
    b = np.random.default_rng(1).random(50)
    c = paired_comparison(b + 0.25, b)
    assert c.difference == pytest.approx(0.25, abs=1e-12)
    assert c.low == pytest.approx(0.25, abs=1e-12) and c.high == pytest.approx(0.25, abs=1e-12)
    # only the two all-equal sign patterns (chance 2 / 2**50) reach |0.25|: p is the smallest the draws allow
    assert c.p_value == pytest.approx(1 / 2001)
    assert paired_comparison(b, b + 0.25).difference == pytest.approx(-0.25)


def test_small_samples_enumerate_every_sign_pattern() -> None:
    # d = (1, 2, 3): |mean| = 2 is reached only by (+,+,+) and (-,-,-): p = 2/8
    assert paired_comparison([1.0, 2.0, 3.0], [0.0, 0.0, 0.0]).p_value == pytest.approx(0.25)
    # d = (1, 1, 1, -1): each s*d is an independent +-1, |sum| = 2 observed; sums of four +-1 are 4, 2, 0, -2, -4
    # with counts 1, 4, 6, 4, 1, so |sum| >= 2 in 10 of 16 patterns
    assert paired_comparison([1.0, 1.0, 1.0, 0.0], [0.0, 0.0, 0.0, 1.0]).p_value == pytest.approx(10 / 16)


def test_the_interval_covers_the_difference_and_a_clear_gap_is_significant() -> None:
    rng = np.random.default_rng(2)
    b = rng.random(400)
    a = b + rng.normal(0.1, 0.2, 400)
    c = paired_comparison(a, b)
    assert c.low < c.difference < c.high and c.low > 0.05 and c.high < 0.15
    assert c.p_value < 0.01
    noise = paired_comparison(b + rng.normal(0.0, 0.2, 400), b)
    assert noise.low < 0 < noise.high and noise.p_value > 0.05


def test_reproducible_with_the_seed() -> None:
    rng = np.random.default_rng(3)
    a, b = rng.random(100), rng.random(100)
    assert paired_comparison(a, b, seed=7) == paired_comparison(a, b, seed=7)
    assert paired_comparison(a, b, seed=7) != paired_comparison(a, b, seed=8)


def test_nan_pairs_are_dropped_and_bad_input_is_named() -> None:
    c = paired_comparison([1.0, math.nan, 3.0], [0.0, 5.0, 2.0])
    assert c.users == 2 and c.difference == pytest.approx(1.0)
    assert paired_comparison([math.nan], [1.0]).users == 0
    with pytest.raises(ValueError, match="one value per user in both: got 2 and 3"):
        paired_comparison([1, 2], [1, 2, 3])
    with pytest.raises(ValueError, match="resamples must be >= 1"):
        paired_comparison([1], [1], resamples=0)


def test_formatting() -> None:
    c = PairedComparison(0.0213, 0.0041, 0.0382, 0.0204, 943)
    assert format_comparison(c) == "+0.021 [+0.004, +0.038] p=0.020"
    assert format_comparison(c._replace(difference=-0.5, p_value=0.0004)).endswith("p<0.001")
    table = format_comparisons([("network", "ease", "hr@10", c, McNemar(30, 12, 0.008))])
    header, row = table.splitlines()
    assert "McNemar" in header and row.split()[:3] == ["network", "ease", "hr@10"]
    assert row.split()[-2:] == ["p=0.008", "943"]


def test_compare_per_user_gives_every_baseline_and_metric() -> None:
    model = {"hr@10": np.array([1.0, 1.0, 0.0, 1.0]), "ndcg@10": np.array([0.5, 1.0, 0.0, 0.3])}
    baselines = {"self": dict(model), "ease": {"hr@10": np.array([0.0, 1.0, 0.0, 0.0]), "ndcg@10": np.zeros(4)}}
    result, rows = compare_per_user(model, baselines, ["hr@10", "ndcg@10"], hit_metric="hr@10")
    assert result["self"]["hr@10"] == {"difference": 0.0, "low": 0.0, "high": 0.0, "p_value": 1.0, "users": 4}
    assert result["self"]["hr@10_mcnemar"] == {"model_only": 0, "baseline_only": 0, "p_value": 1.0}
    assert result["ease"]["hr@10_mcnemar"] == {"model_only": 2, "baseline_only": 0, "p_value": 0.5}
    assert result["ease"]["ndcg@10"]["difference"] == pytest.approx(0.45)
    # d = (0.5, 1, 0, 0.3): 16 sign patterns, |sum| >= 1.8 for (+,+,*,+) and (-,-,*,-): 4 of 16
    assert result["ease"]["ndcg@10"]["p_value"] == pytest.approx(0.25)
    assert [row[:3] for row in rows] == [("model", b, m) for b in ("self", "ease") for m in ("hr@10", "ndcg@10")]
    assert rows[1][4] is None and rows[0][4] == McNemar(0, 0, 1.0)


def test_align_users_reorders_and_marks_missing_users() -> None:
    aligned = align_users(np.array([7, 3, 9]), np.array([3, 5, 7]), np.array([0.3, 0.5, 0.7]))
    np.testing.assert_array_equal(aligned, [0.7, 0.3, np.nan])
    assert np.isnan(align_users(np.array([1]), np.array([], dtype=np.int64), np.array([]))).all()


def test_per_user_csv() -> None:
    text = per_user_csv({"user": np.array([4, 2]), "model_hr@10": np.array([1.0, 0.0]), "x": np.array([0.25, np.nan])})
    assert text == "user,model_hr@10,x\n4,1.0,0.25\n2,0.0,nan\n"
    keys = per_user_csv({"user": np.array([0, 1]), "user_key": ["a,b", "c"], "v": np.array([0.5, 1.0])})
    assert keys == 'user,user_key,v\n0,"a,b",0.5\n1,c,1.0\n'
