"""Tests of the synthetic MovieLens-shaped generator.

The TFDS builder, the demo and the benchmarks trust these data to look like
MovieLens and to carry a correct oracle, so the shape targets and the oracle's
calibration are checked here, on small specs only (synthetic-32m takes tens of
seconds).
"""

import dataclasses
import re

import numpy as np
import pytest

from ncf_tfrs.datasets.movielens_users import synthetic

SMALL = synthetic.SPECS["synthetic-small"]


def _auc(labels, scores):
  """Rank-based ROC AUC, ties averaged (Mann-Whitney U)."""
  labels = np.asarray(labels, dtype=bool)
  order = np.argsort(scores, kind="stable")
  sorted_scores = np.asarray(scores)[order]
  bounds = np.flatnonzero(np.concatenate(
      [[True], sorted_scores[1:] != sorted_scores[:-1], [True]]))
  mid_ranks = (bounds[:-1] + bounds[1:] + 1) / 2
  ranks = np.empty(len(order))
  ranks[order] = np.repeat(mid_ranks, np.diff(bounds))
  positives = labels.sum()
  negatives = len(labels) - positives
  return ((ranks[labels].sum() - positives * (positives + 1) / 2) /
          (positives * negatives))


def _check_invariants(spec, data):
  """The structural guarantees every generated set must meet."""
  counts = np.diff(data.row_splits)
  assert data.num_users == spec.num_users
  assert data.num_movies == spec.num_movies
  assert data.num_ratings == spec.num_ratings
  assert data.row_splits.dtype == np.int64
  assert data.row_splits[0] == 0
  assert data.row_splits[-1] == spec.num_ratings
  assert counts.min() >= spec.min_ratings_per_user
  assert counts.max() <= spec.num_movies
  assert data.movie_index.dtype == np.int32
  assert data.movie_index.min() >= 0
  assert data.movie_index.max() < spec.num_movies
  for name in ("rating", "timestamp", "oracle_liked_prob"):
    assert len(getattr(data, name)) == spec.num_ratings, name
  assert data.rating.dtype == np.float32
  assert data.timestamp.dtype == np.int64
  assert data.oracle_liked_prob.dtype == np.float32

  user = data.user_index()
  pairs = user.astype(np.int64) * spec.num_movies + data.movie_index
  assert len(np.unique(pairs)) == spec.num_ratings, "repeated (user, movie)"
  assert np.all(np.bincount(data.movie_index,
                            minlength=spec.num_movies) >= 1), "unrated movie"
  same_user = user[1:] == user[:-1]
  assert np.all(np.diff(data.timestamp)[same_user] >= 0), "unsorted times"

  assert np.all(np.isin(data.rating, synthetic.RATING_LEVELS))
  assert np.all((data.oracle_liked_prob >= 0) &
                (data.oracle_liked_prob <= 1))

  assert data.user_ids.tolist() == [
      str(i) for i in range(1, spec.num_users + 1)]
  movie_ids = data.movie_ids.astype(np.int64)
  assert movie_ids[0] >= 1 and np.all(np.diff(movie_ids) > 0)
  assert len(data.titles) == len(data.genres) == spec.num_movies
  assert all(g and set(g) <= set(synthetic.GENRES) for g in data.genres)


@pytest.fixture(scope="module")
def small():
  return synthetic.generate(SMALL)


def test_specs():
  assert SMALL.num_users == 943
  assert SMALL.num_movies == 1_682
  assert SMALL.num_ratings == 100_000
  big = synthetic.SPECS["synthetic-32m"]
  assert (big.num_users, big.num_movies, big.num_ratings) == (
      200_948, 84_432, 32_000_204)
  assert big.min_ratings_per_user == 20


def test_small_invariants(small):
  _check_invariants(SMALL, small)
  assert small.user_ids.dtype.kind == "U"
  assert small.movie_ids.dtype.kind == "U"
  for movie_id, title in zip(small.movie_ids, small.titles):
    match = re.fullmatch(r"Synthetic Movie (\d+) \((\d{4})\)", title)
    assert match and match[1] == movie_id, title
    assert 1900 <= int(match[2]) <= 2023, title


def test_rating_histogram_is_movielens_like(small):
  rating = small.rating
  assert 3.3 <= rating.mean() <= 3.7
  assert 0.56 <= np.mean(rating > synthetic.LIKED_THRESHOLD) <= 0.66
  share = np.array([np.mean(rating == r) for r in synthetic.RATING_LEVELS])
  assert synthetic.RATING_LEVELS[np.argmax(share)] == 4.0
  # Half stars are rarer than the whole stars next to them.
  for half in range(0, 10, 2):
    neighbours = [i for i in (half - 1, half + 1) if 0 <= i < 10]
    assert share[half] < share[neighbours].min(), half
  assert share[0] < 0.03  # 0.5 stars.
  # The 4.0 mode, then 3.0 and 5.0.
  top3 = set(synthetic.RATING_LEVELS[np.argsort(share)[-3:]].tolist())
  assert top3 == {3.0, 4.0, 5.0}
  np.testing.assert_allclose(share, synthetic.ML32M_RATING_SHARE, atol=0.01)


def test_heavy_tails(small):
  per_user = np.diff(small.row_splits)
  assert per_user.max() > 8 * np.median(per_user)
  assert per_user.mean() > 1.5 * np.median(per_user)
  per_movie = np.sort(np.bincount(small.movie_index))[::-1]
  top_share = per_movie[:len(per_movie) // 100].sum() / per_movie.sum()
  assert top_share > 0.05  # Five times the uniform 1%.
  assert per_movie[0] > 10 * np.median(per_movie)
  assert per_movie[-1] <= 3


def test_timestamps_span_movielens_years(small):
  years = small.timestamp.astype("datetime64[s]").astype("datetime64[Y]")
  assert years.min() >= np.datetime64("1996", "Y")
  assert years.max() <= np.datetime64("2023", "Y")
  assert len(np.unique(years)) > 20


def test_oracle_auc_and_accuracy(small):
  liked = small.rating > synthetic.LIKED_THRESHOLD
  auc = _auc(liked, small.oracle_liked_prob)
  assert 0.84 <= auc <= 0.90
  accuracy = np.mean(liked == (small.oracle_liked_prob > 0.5))
  majority = max(liked.mean(), 1 - liked.mean())
  assert accuracy > majority + 0.1


def test_oracle_is_calibrated(small):
  liked = small.rating > synthetic.LIKED_THRESHOLD
  oracle = small.oracle_liked_prob
  assert abs(oracle.mean() - liked.mean()) < 0.02
  # Per decile of the oracle, it matches the observed rate.
  edges = np.quantile(oracle, np.linspace(0, 1, 11))
  bucket = np.clip(np.searchsorted(edges, oracle, side="right") - 1, 0, 9)
  for b in range(10):
    in_bucket = bucket == b
    assert abs(oracle[in_bucket].mean() - liked[in_bucket].mean()) < 0.03, b


def test_popular_movies_are_rated_higher(small):
  count = np.bincount(small.movie_index)
  mean = np.bincount(small.movie_index, weights=small.rating) / count
  rated = count >= 20
  corr = np.corrcoef(np.log(count[rated]), mean[rated])[0, 1]
  assert corr > 0.1


def test_genres_follow_movielens_frequencies(small):
  tally = {g: 0 for g in synthetic.GENRES}
  for genres in small.genres:
    for g in genres:
      tally[g] += 1
  assert max(tally, key=tally.get) == "Drama"
  assert tally["Comedy"] > tally["Western"] > 0


def test_genres_carry_taste(small):
  # A genre is a region of the latent space, so within a user the oracle
  # differs across genres more than chance: check that per-(user, genre)
  # mean oracles vary beyond the per-user mean.
  user = small.user_index()
  drama = np.array(["Drama" in g for g in small.genres])[small.movie_index]
  horror = np.array(["Horror" in g for g in small.genres])[small.movie_index]
  oracle = small.oracle_liked_prob.astype(np.float64)
  counts = np.diff(small.row_splits)
  gaps = []
  for genre in (drama, horror):
    n = np.bincount(user, weights=genre, minlength=len(counts))
    genre_mean = np.bincount(user, weights=oracle * genre,
                             minlength=len(counts)) / np.maximum(n, 1)
    other_mean = np.bincount(user, weights=oracle * ~genre,
                             minlength=len(counts)) / np.maximum(counts - n, 1)
    ok = (n >= 10) & (counts - n >= 10)
    gaps.append(np.abs(genre_mean - other_mean)[ok].mean())
  # The shuffled control: same genre counts, movies assigned at random.
  rng = np.random.default_rng(0)
  shuffled = rng.permutation(drama)
  n = np.bincount(user, weights=shuffled, minlength=len(counts))
  genre_mean = np.bincount(user, weights=oracle * shuffled,
                           minlength=len(counts)) / np.maximum(n, 1)
  other_mean = np.bincount(user, weights=oracle * ~shuffled,
                           minlength=len(counts)) / np.maximum(counts - n, 1)
  ok = (n >= 10) & (counts - n >= 10)
  control = np.abs(genre_mean - other_mean)[ok].mean()
  assert min(gaps) > 1.5 * control


def test_deterministic():
  spec = dataclasses.replace(SMALL, num_users=300, num_ratings=30_000)
  first = synthetic.generate(spec)
  second = synthetic.generate(spec)
  for field in dataclasses.fields(synthetic.SyntheticData):
    a, b = getattr(first, field.name), getattr(second, field.name)
    if isinstance(a, np.ndarray):
      assert a.dtype == b.dtype, field.name
      assert a.tobytes() == b.tobytes(), field.name
    else:
      assert a == b, field.name
  other = synthetic.generate(dataclasses.replace(spec, seed=1))
  assert other.movie_index.tobytes() != first.movie_index.tobytes()
  assert other.rating.tobytes() != first.rating.tobytes()
  assert other.timestamp.tobytes() != first.timestamp.tobytes()


@pytest.mark.parametrize("spec", [
    # Every user rates every movie.
    synthetic.SyntheticSpec(num_users=5, num_movies=30, num_ratings=150),
    # Every user at the minimum.
    synthetic.SyntheticSpec(num_users=50, num_movies=200, num_ratings=1_000),
    # One user, exactly one rating per movie.
    synthetic.SyntheticSpec(num_users=1, num_movies=25, num_ratings=25),
    # Nearly dense: most users are sampled exactly.
    synthetic.SyntheticSpec(num_users=30, num_movies=100, num_ratings=2_500),
    # Sparse, with a long tail to cover.
    synthetic.SyntheticSpec(num_users=2_000, num_movies=20_000,
                            num_ratings=60_000, seed=3),
    # Minimum 1, uniform popularity, no taste, contiguous ids.
    synthetic.SyntheticSpec(num_users=100, num_movies=500, num_ratings=5_000,
                            min_ratings_per_user=1, popularity_exponent=0.0,
                            choice_strength=0.0, movie_id_gap=0.0),
], ids=["full", "all-min", "one-user", "dense", "sparse", "flat"])
def test_invariants_hold_at_edges(spec):
  data = synthetic.generate(spec)
  _check_invariants(spec, data)
  if spec.movie_id_gap == 0:
    assert data.movie_ids.tolist() == [
        str(i) for i in range(1, spec.num_movies + 1)]


def test_block_boundaries_and_fallback(monkeypatch):
  # Tiny blocks and a single sampling round force many blocks and send the
  # users left short to the exact sampler.
  monkeypatch.setattr(synthetic, "_CELL_BLOCK", 512 * 37)
  monkeypatch.setattr(synthetic, "_MAX_TOP_UP_ROUNDS", 1)
  spec = dataclasses.replace(SMALL, num_users=500, num_ratings=50_000)
  _check_invariants(spec, synthetic.generate(spec))


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(num_users=10, num_movies=100, num_ratings=199), ValueError,
     "num_users \\* min_ratings_per_user"),
    (dict(num_users=10, num_movies=30, num_ratings=301), ValueError,
     "exceeds num_users \\* num_movies"),
    (dict(num_users=10, num_movies=10, num_ratings=100,
          min_ratings_per_user=11), ValueError, "exceeds num_movies"),
    (dict(num_users=1, num_movies=100, num_ratings=50), ValueError,
     "every movie is rated"),
    (dict(num_users=0, num_movies=10, num_ratings=10), ValueError,
     "num_users must be >= 1"),
    (dict(num_users=10.0, num_movies=10, num_ratings=200), TypeError,
     "num_users must be an int"),
    (dict(num_users=10, num_movies=100, num_ratings=200, seed=-1), ValueError,
     "seed"),
    (dict(num_users=10, num_movies=100, num_ratings=200, noise_std=0.0),
     ValueError, "noise_std"),
    (dict(num_users=10, num_movies=100, num_ratings=200,
          rating_share=(0.5, 0.5)), ValueError, "rating_share"),
    (dict(num_users=10, num_movies=100, num_ratings=200,
          popularity_bias_corr=2.0), ValueError, "popularity_bias_corr"),
])
def test_validation(kwargs, error, match):
  with pytest.raises(error, match=match):
    synthetic.SyntheticSpec(**kwargs)
