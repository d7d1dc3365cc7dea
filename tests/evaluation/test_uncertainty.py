"""Bootstrap intervals over users: they cover the true mean as often as they claim, and the
paired difference matches users by id."""

from __future__ import annotations

import pytest
import torch

from recsys.evaluation import uncertainty
from recsys.evaluation.uncertainty import bootstrap_means, intervals, paired


def test_percentile_intervals_cover_the_true_mean_about_95_percent_of_the_time():
    """300 independent draws of 400 users from a known distribution (hit rate 0.3): the 95%
    interval should contain 0.3 in roughly 95% of them (binomial spread: 0.91-0.99)."""
    g = torch.Generator().manual_seed(0)
    covered = 0
    for seed in range(300):
        values = {"recall@10": (torch.rand(400, generator=g) < 0.3).double()}
        ci = intervals(values, resamples=400, seed=seed)["recall@10"]
        covered += ci["low"] <= 0.3 <= ci["high"]
    assert 0.91 <= covered / 300 <= 0.99


def test_interval_width_shrinks_like_one_over_root_n():
    g = torch.Generator().manual_seed(1)
    widths = []
    for n in (400, 6400):
        ci = intervals({"m": torch.rand(n, generator=g, dtype=torch.float64)})["m"]
        widths.append(ci["high"] - ci["low"])
    assert widths[0] / widths[1] == pytest.approx(4.0, rel=0.25)


def test_chunked_resampling_keeps_every_resample_a_mean_of_the_users(monkeypatch):
    values = {"a": torch.arange(50, dtype=torch.float64), "b": torch.ones(50, dtype=torch.float64)}
    whole = bootstrap_means(values, resamples=37, seed=3)
    monkeypatch.setattr(uncertainty, "CHUNK_ELEMENTS", 100)  # one resample per chunk
    chunked = bootstrap_means(values, resamples=37, seed=3)
    assert whole["a"].shape == (37,)
    torch.testing.assert_close(chunked["b"], torch.ones(37, dtype=torch.float64))
    assert float(chunked["a"].min()) >= 0 and float(chunked["a"].max()) <= 49


def test_paired_difference_matches_users_by_id():
    users_a, users_b = torch.tensor([3, 1, 2]), torch.tensor([2, 3, 1])
    a = {"ndcg@10": torch.tensor([0.3, 0.1, 0.2], dtype=torch.float64)}
    b = {"ndcg@10": torch.tensor([0.5, 0.0, 0.1], dtype=torch.float64)}  # users 2, 3, 1
    diff = paired(users_a, a, users_b, b)["ndcg@10"]
    # sorted users 1, 2, 3: a = 0.1, 0.2, 0.3; b = 0.1, 0.5, 0.0
    torch.testing.assert_close(diff, torch.tensor([0.0, -0.3, 0.3], dtype=torch.float64))
    with pytest.raises(ValueError, match="different users"):
        paired(users_a, a, torch.tensor([1, 2, 4]), b)


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="confidence"):
        intervals({"m": torch.ones(3)}, confidence=1.0)
    with pytest.raises(ValueError, match="at least one user"):
        intervals({"m": torch.ones(0)})
