"""Deterministic MovieLens-shaped synthetic ratings with a known answer.

The real MovieLens sets are large downloads with licence terms, so tests, the
demo and scale benchmarks use this generator instead. It plants a known rating
model: user bias + movie bias (higher for popular movies) + a low-rank
user-movie preference + Gaussian noise, quantized onto half stars at cut
points that reproduce ml-32m's rating histogram (which also sets the global
mean). Around it, it samples MovieLens's shapes: heavy-tailed user activity,
Zipf-like movie popularity, users who mostly watch what they like, and
per-user rating sessions between 1996 and 2023. Because the planted model is
known, every rating carries the model's own P(rating > 3), so a trained
model's AUC can be compared with the best achievable one.

The module is pure numpy (no TensorFlow) and fully vectorized, so the
ml-32m-sized set builds in well under a minute. `write_csv` writes a
generated set as a GroupLens CSV release (ratings.csv, movies.csv), so that
benchmarks can time the parser real releases go through at full scale.
"""

from __future__ import annotations

import csv
import dataclasses
import datetime
import math
import os

import numpy as np
import pandas as pd

from ncf_tfrs import features

# The MovieLens genre vocabulary (without "(no genres listed)": every synthetic
# movie gets at least one genre).
GENRES = (
    "Action", "Adventure", "Animation", "Children", "Comedy", "Crime",
    "Documentary", "Drama", "Fantasy", "Film-Noir", "Horror", "IMAX",
    "Musical", "Mystery", "Romance", "Sci-Fi", "Thriller", "War", "Western",
)
# Share of ml-32m movies tagged with each genre, aligned with GENRES.
_GENRE_SHARE = (
    0.12, 0.07, 0.05, 0.05, 0.27, 0.10,
    0.09, 0.41, 0.05, 0.005, 0.10, 0.003,
    0.02, 0.05, 0.12, 0.06, 0.14, 0.03, 0.02,
)

# Half-star rating levels, lowest first.
RATING_LEVELS = np.asarray(features.RATING_LEVELS, dtype=np.float32)
ML32M_RATING_SHARE = tuple(c / sum(features.ML32M_RATING_COUNTS)
                           for c in features.ML32M_RATING_COUNTS)
# Ratings above this are "liked".
LIKED_THRESHOLD = features.LIKED_THRESHOLD

# MovieLens ratings span 1996 to October 2023.
_FIRST_TIMESTAMP = int(datetime.datetime(
    1996, 1, 1, tzinfo=datetime.timezone.utc).timestamp())
_LAST_TIMESTAMP = int(datetime.datetime(
    2023, 10, 12, tzinfo=datetime.timezone.utc).timestamp())

# Rows per block when computing scores, to bound temporary memory.
_ROW_BLOCK = 1 << 21
# The most popular movies, which the sampler includes by probability
# rather than drawing.
_HEAD_SIZE = 512
# Target users * head movies per block of users in the sampler.
_CELL_BLOCK = 1 << 22
# Random priority bits used to pick among a user's distinct sampled movies.
_MIN_PRIORITY_BITS = 24
# Top-up rounds before a short user is resampled exactly.
_MAX_TOP_UP_ROUNDS = 8


@dataclasses.dataclass(frozen=True)
class SyntheticSpec:
  """Sizes and shape knobs of one synthetic data set.

  Attributes:
    num_users: Users, each with at least `min_ratings_per_user` ratings.
    num_movies: Movies, each rated at least once.
    num_ratings: Total ratings, exactly.
    min_ratings_per_user: MovieLens keeps users with at least 20 ratings.
    seed: Seed of every random draw; the same spec gives identical data.
    rank: Rank of the planted user-movie preference.
    user_bias_std: Spread of user rating offsets (score units).
    movie_bias_std: Spread of movie rating offsets (score units).
    interaction_std: Spread of the low-rank preference term (score units).
    noise_std: Per-rating Gaussian noise; with the terms above, it sets how
      predictable "liked" is (the oracle AUC).
    popularity_bias_corr: Correlation of a movie's bias with its log
      popularity (popular movies are rated a bit higher).
    popularity_exponent: Zipf exponent of movie popularity by rank.
    popularity_offset: Flattens the head of the Zipf curve: the movie of
      popularity rank r (from 1) gets weight
      (r + popularity_offset) ** -popularity_exponent.
    activity_sigma: Log-normal sigma of user activity above the minimum.
    max_user_fraction: Cap on one user's ratings as a fraction of num_movies
      (the heaviest ml-32m user rated ~40% of its movies); raised when the
      totals need it.
    num_taste_clusters: Movies are partitioned into clusters by latent
      factors; users sample clusters they like more often.
    choice_strength: How strongly users pick clusters they like (0 = choice
      by popularity only).
    rating_share: Target share of each half-star level, lowest first; the
      quantization cut points are set so the ratings follow it.
    movie_id_gap: Mean extra gap between consecutive movie ids, so ids are
      sparse like MovieLens's (0 makes them 1..num_movies).
  """

  num_users: int
  num_movies: int
  num_ratings: int
  min_ratings_per_user: int = 20
  seed: int = 0
  rank: int = 12
  user_bias_std: float = 0.35
  movie_bias_std: float = 0.35
  interaction_std: float = 0.55
  noise_std: float = 0.6
  popularity_bias_corr: float = 0.5
  popularity_exponent: float = 2.0
  popularity_offset: float = 60.0
  activity_sigma: float = 1.55
  max_user_fraction: float = 0.5
  num_taste_clusters: int = 16
  choice_strength: float = 1.0
  rating_share: tuple[float, ...] = ML32M_RATING_SHARE
  movie_id_gap: float = 2.5

  def __post_init__(self):
    for name in ("num_users", "num_movies", "num_ratings",
                 "min_ratings_per_user", "rank", "num_taste_clusters"):
      value = getattr(self, name)
      if not isinstance(value, (int, np.integer)) or isinstance(value, bool):
        raise TypeError(f"{name} must be an int, got {value!r}.")
      if value < 1:
        raise ValueError(f"{name} must be >= 1, got {value}.")
    if not isinstance(self.seed, (int, np.integer)) or self.seed < 0:
      raise ValueError(f"seed must be a non-negative int, got {self.seed!r}.")
    if max(self.num_users, self.num_movies) > np.iinfo(np.int32).max:
      raise ValueError("num_users and num_movies must fit in int32.")
    if self.min_ratings_per_user > self.num_movies:
      raise ValueError(
          f"min_ratings_per_user={self.min_ratings_per_user} exceeds "
          f"num_movies={self.num_movies}: a user rates each movie at most "
          "once.")
    if self.num_ratings < self.num_users * self.min_ratings_per_user:
      raise ValueError(
          f"num_ratings={self.num_ratings} is less than num_users * "
          f"min_ratings_per_user = {self.num_users} * "
          f"{self.min_ratings_per_user}.")
    if self.num_ratings > self.num_users * self.num_movies:
      raise ValueError(
          f"num_ratings={self.num_ratings} exceeds num_users * num_movies = "
          f"{self.num_users * self.num_movies}: a user rates each movie at "
          "most once.")
    if self.num_ratings < self.num_movies:
      raise ValueError(
          f"num_ratings={self.num_ratings} is less than num_movies="
          f"{self.num_movies}: every movie is rated at least once.")
    for name in ("user_bias_std", "movie_bias_std", "interaction_std",
                 "popularity_exponent", "popularity_offset", "activity_sigma",
                 "choice_strength", "movie_id_gap"):
      if not getattr(self, name) >= 0:
        raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}.")
    if not self.noise_std > 0:
      raise ValueError(f"noise_std must be > 0, got {self.noise_std}.")
    if not -1 <= self.popularity_bias_corr <= 1:
      raise ValueError(
          "popularity_bias_corr must be in [-1, 1], got "
          f"{self.popularity_bias_corr}.")
    if not 0 < self.max_user_fraction <= 1:
      raise ValueError(
          f"max_user_fraction must be in (0, 1], got {self.max_user_fraction}.")
    share = np.asarray(self.rating_share, dtype=np.float64)
    if (share.shape != RATING_LEVELS.shape or np.any(share < 0) or
        not math.isclose(share.sum(), 1.0, abs_tol=1e-6)):
      raise ValueError(
          f"rating_share must be {len(RATING_LEVELS)} non-negative shares "
          f"summing to 1, got {self.rating_share}.")

  @property
  def max_ratings_per_user(self) -> int:
    """The activity cap: max_user_fraction of the movies, or what it takes."""
    cap = max(int(self.max_user_fraction * self.num_movies),
              -(-self.num_ratings // self.num_users),
              self.min_ratings_per_user)
    return min(cap, self.num_movies)


SPECS: dict[str, SyntheticSpec] = {
    # ml-100k sized.
    "synthetic-small": SyntheticSpec(
        num_users=943, num_movies=1_682, num_ratings=100_000),
    # ml-32m sized.
    "synthetic-32m": SyntheticSpec(
        num_users=200_948, num_movies=84_432, num_ratings=32_000_204),
}


@dataclasses.dataclass(frozen=True)
class SyntheticData:
  """Ratings in MovieLens's shape, grouped by user, plus the planted answer.

  Attributes:
    user_ids: (num_users,) str, "1".."num_users" like MovieLens userIds.
    row_splits: (num_users + 1,) int64; user u's ratings are rows
      [row_splits[u], row_splits[u + 1]).
    movie_index: (num_ratings,) int32 index into movie_ids; distinct within a
      user, rows in timestamp order.
    rating: (num_ratings,) float32 half stars 0.5 .. 5.0.
    timestamp: (num_ratings,) int64 unix seconds, non-decreasing per user.
    oracle_liked_prob: (num_ratings,) float32, the planted model's exact
      P(rating > 3 | user, movie).
    movie_ids: (num_movies,) str, sparse increasing numeric ids.
    titles: (num_movies,) str, "Synthetic Movie <id> (<year>)".
    genres: Per movie, a non-empty list of names from GENRES, derived from the
      movie's latent factors so that genres predict taste.
  """

  user_ids: np.ndarray
  row_splits: np.ndarray
  movie_index: np.ndarray
  rating: np.ndarray
  timestamp: np.ndarray
  oracle_liked_prob: np.ndarray
  movie_ids: np.ndarray
  titles: np.ndarray
  genres: list[list[str]]

  @property
  def num_users(self) -> int:
    return len(self.user_ids)

  @property
  def num_movies(self) -> int:
    return len(self.movie_ids)

  @property
  def num_ratings(self) -> int:
    return len(self.movie_index)

  def user_index(self) -> np.ndarray:
    """(num_ratings,) int32 user of each row, expanded from row_splits."""
    return np.repeat(np.arange(self.num_users, dtype=np.int32),
                     np.diff(self.row_splits))


def generate(spec: SyntheticSpec) -> SyntheticData:
  """Generates the data set described by `spec`, deterministically."""
  # Independent streams per stage, so tuning one stage leaves the others'
  # draws unchanged.
  (movie_rng, user_rng, choice_rng, cover_rng, noise_rng,
   time_rng) = [np.random.default_rng(s)
                for s in np.random.SeedSequence(spec.seed).spawn(6)]
  movies = _make_movies(spec, movie_rng)
  users = _make_users(spec, movies, user_rng)
  movie_index = _choose_movies(spec, movies, users, choice_rng)
  _cover_all_movies(movie_index, spec.num_movies, cover_rng)
  user_of_row = np.repeat(np.arange(spec.num_users, dtype=np.int32),
                          users.counts)
  rating, oracle = _rate(spec, movies, users, user_of_row, movie_index,
                         noise_rng)
  timestamp = _timestamps(users.counts, user_of_row, time_rng)
  row_splits = np.zeros(spec.num_users + 1, dtype=np.int64)
  np.cumsum(users.counts, out=row_splits[1:])
  return SyntheticData(
      user_ids=_numeric_strings(np.arange(1, spec.num_users + 1)),
      row_splits=row_splits,
      movie_index=movie_index,
      rating=rating,
      timestamp=timestamp,
      oracle_liked_prob=oracle,
      movie_ids=_numeric_strings(movies.ids),
      titles=np.array([f"Synthetic Movie {i} ({y})"
                       for i, y in zip(movies.ids.tolist(),
                                       movies.years.tolist())]),
      genres=movies.genres,
  )


@dataclasses.dataclass(frozen=True)
class _Movies:
  """Planted movie side: popularity, latent factors and metadata."""
  popularity: np.ndarray  # (M,) float64, sums to 1.
  factors: np.ndarray  # (M, rank) float32.
  bias: np.ndarray  # (M,) float32.
  cluster: np.ndarray  # (M,) int32 taste cluster.
  centroids: np.ndarray  # (K, rank) float64 mean factors per cluster.
  ids: np.ndarray  # (M,) int64.
  years: np.ndarray  # (M,) int64.
  genres: list[list[str]]


@dataclasses.dataclass(frozen=True)
class _Users:
  """Planted user side: activity, latent factors and cluster tastes."""
  counts: np.ndarray  # (N,) int64 ratings per user.
  factors: np.ndarray  # (N, rank) float32.
  bias: np.ndarray  # (N,) float32.
  cluster_prob: np.ndarray  # (N, K) float64, each row sums to 1.


def write_csv(data: SyntheticData, folder: str,
              chunk_rows: int = 1 << 22) -> None:
  """Writes `data` as a GroupLens CSV release: ratings.csv and movies.csv.

  The files are laid out as ml-20m/25m/32m's are: the same headers, ratings
  ordered by user and then movie id, ratings as "4.0"/"3.5", titles quoted
  where needed, genres joined by "|". The planted model is left out.

  Args:
    data: a generated set.
    folder: where to write (created), e.g. `<manual_dir>/ml-32m`.
    chunk_rows: ratings formatted at a time, to bound memory.
  """
  os.makedirs(folder, exist_ok=True)
  user = data.user_index()
  movie_id = data.movie_ids.astype(np.int64)[data.movie_index]
  order = np.lexsort((movie_id, user))
  user_id = data.user_ids.astype(np.int64)
  with open(os.path.join(folder, "ratings.csv"), "w", newline="") as f:
    f.write("userId,movieId,rating,timestamp\n")
    for start in range(0, len(order), chunk_rows):
      rows = order[start:start + chunk_rows]
      pd.DataFrame({"userId": user_id[user[rows]], "movieId": movie_id[rows],
                    "rating": data.rating[rows],
                    "timestamp": data.timestamp[rows]}).to_csv(
                        f, header=False, index=False, float_format="%.1f",
                        lineterminator="\n")
  with open(os.path.join(folder, "movies.csv"), "w", newline="",
            encoding="utf-8") as f:
    writer = csv.writer(f, lineterminator="\n")
    writer.writerow(["movieId", "title", "genres"])
    for movie, title, genres in zip(data.movie_ids, data.titles,
                                    data.genres):
      writer.writerow([movie, title, "|".join(genres)])


def _make_movies(spec: SyntheticSpec, rng: np.random.Generator) -> _Movies:
  m, rank = spec.num_movies, spec.rank
  # Zipf-like popularity by rank, assigned to movies in random order.
  ranks = np.arange(m, dtype=np.float64)
  weight = (ranks + 1 + spec.popularity_offset) ** -spec.popularity_exponent
  popularity = weight[rng.permutation(m)]
  popularity /= popularity.sum()

  factors = rng.standard_normal((m, rank))
  log_pop = np.log(popularity)
  pop_z = (log_pop - log_pop.mean()) / max(log_pop.std(), 1e-12)
  rho = spec.popularity_bias_corr
  bias = spec.movie_bias_std * (
      rho * pop_z + math.sqrt(1 - rho**2) * rng.standard_normal(m))

  # Genres are half-spaces of the latent space, thresholded to MovieLens's
  # genre frequencies, so a genre tells which users will like a movie.
  directions = rng.standard_normal((rank, len(GENRES)))
  directions /= np.linalg.norm(directions, axis=0)
  projection = factors @ directions
  thresholds = [np.quantile(projection[:, j], 1 - share)
                for j, share in enumerate(_GENRE_SHARE)]
  margin = projection - thresholds
  tagged = margin > 0
  untagged = ~tagged.any(axis=1)
  tagged[untagged, np.argmax(margin[untagged], axis=1)] = True
  genres = [[GENRES[j] for j in np.flatnonzero(row)] for row in tagged]

  centers = rng.standard_normal((spec.num_taste_clusters, rank))
  cluster = np.argmax(factors @ centers.T, axis=1).astype(np.int32)
  sums = np.zeros((spec.num_taste_clusters, rank))
  np.add.at(sums, cluster, factors)
  sizes = np.bincount(cluster, minlength=spec.num_taste_clusters)
  centroids = sums / np.maximum(sizes, 1)[:, None]

  gaps = 1 + rng.poisson(spec.movie_id_gap, m)
  gaps[0] = 1
  ids = np.cumsum(gaps)
  # Skewed to recent years, like MovieLens's catalogue.
  years = np.clip(2023 - np.floor(rng.exponential(18.0, m)), 1902, 2023)
  return _Movies(
      popularity=popularity,
      factors=factors.astype(np.float32),
      bias=bias.astype(np.float32),
      cluster=cluster,
      centroids=centroids,
      ids=ids,
      years=years.astype(np.int64),
      genres=genres,
  )


def _make_users(spec: SyntheticSpec, movies: _Movies,
                rng: np.random.Generator) -> _Users:
  n, rank = spec.num_users, spec.rank
  counts = _activity_counts(spec, rng)
  # Scaled so the preference term user . movie has std interaction_std.
  factors = rng.standard_normal((n, rank)) * (
      spec.interaction_std / math.sqrt(rank))
  bias = spec.user_bias_std * rng.standard_normal(n)

  affinity = factors @ movies.centroids.T
  affinity /= max(affinity.std(), 1e-12)
  mass = np.bincount(movies.cluster, weights=movies.popularity,
                     minlength=spec.num_taste_clusters)
  logits = spec.choice_strength * affinity
  logits -= logits.max(axis=1, keepdims=True)
  cluster_prob = mass * np.exp(logits)
  cluster_prob /= cluster_prob.sum(axis=1, keepdims=True)
  return _Users(
      counts=counts,
      factors=factors.astype(np.float32),
      bias=bias.astype(np.float32),
      cluster_prob=cluster_prob,
  )


def _activity_counts(spec: SyntheticSpec,
                     rng: np.random.Generator) -> np.ndarray:
  """Log-normal ratings per user above the minimum, summing exactly."""
  n = spec.num_users
  cap = spec.max_ratings_per_user - spec.min_ratings_per_user
  target = spec.num_ratings - n * spec.min_ratings_per_user
  raw = np.exp(spec.activity_sigma * rng.standard_normal(n))
  if target == n * cap:
    extra = np.full(n, float(cap))
  else:
    # Find the scale at which the capped activity sums to target, then round
    # down and hand the remainder to the largest fractional parts.
    lo, hi = 0.0, target / raw.sum()
    while np.minimum(hi * raw, cap).sum() < target:
      hi *= 2
    for _ in range(100):
      mid = (lo + hi) / 2
      if np.minimum(mid * raw, cap).sum() <= target:
        lo = mid
      else:
        hi = mid
    extra = np.minimum(lo * raw, cap)
  counts = np.floor(extra).astype(np.int64)
  short = target - counts.sum()
  fraction = extra - counts
  while short > 0:
    open_users = np.flatnonzero(counts < cap)
    chosen = open_users[np.argsort(-fraction[open_users], kind="stable")]
    chosen = chosen[:short]
    counts[chosen] += 1
    fraction[chosen] = 0
    short -= len(chosen)
  return counts + spec.min_ratings_per_user


def _choose_movies(spec: SyntheticSpec, movies: _Movies, users: _Users,
                   rng: np.random.Generator) -> np.ndarray:
  """Samples each user's distinct movies; returns movie_index in row order.

  A user watches movies from a mixture: a taste cluster from their own
  cluster_prob, then a movie of that cluster by popularity. Draws with
  replacement are Poissonized (a Poisson number of them), so each movie's
  draw count is an independent Poisson; a user's rows are a uniformly random
  subset of the distinct movies drawn, in random order. The draw rate that
  should yield enough distinct movies is estimated from the popularity
  curve, and short users draw again.

  Under a Zipf curve most draws hit the same few head movies, so rather than
  drawing them, each head movie is included with its exact probability
  1 - exp(-rate * weight); only the tail is drawn. Users who would need more
  draws than there are movies are sampled exactly, without replacement, over
  the whole catalogue instead.
  """
  m = spec.num_movies
  counts = users.counts
  row_start = np.concatenate([[0], np.cumsum(counts)])
  movie_index = np.empty(spec.num_ratings, dtype=np.int32)
  sampler = _MixtureSampler(movies.popularity, movies.cluster,
                            spec.num_taste_clusters, min(m, _HEAD_SIZE))
  draws_needed = _draws_needed_fn(movies.popularity)

  dense = (counts > m // 2) | ~(draws_needed(counts) <= m)
  light = np.flatnonzero(~dense)
  mbits = max(int(m - 1).bit_length(), 1)
  block_users = max(1, min(_CELL_BLOCK // sampler.head_size,
                           1 << (63 - _MIN_PRIORITY_BITS - mbits)))
  for start in range(0, len(light), block_users):
    block = light[start:start + block_users]
    short = _sample_light_block(block, counts[block], users.cluster_prob,
                                sampler, draws_needed, mbits, 4.0 * m,
                                movie_index, row_start, rng)
    dense[block[short]] = True

  log_popularity = np.log(movies.popularity)
  log_mass = np.log(np.maximum(sampler.mass, 1e-300))
  for u in np.flatnonzero(dense):
    # Gumbel top-k: an exact sample without replacement from the user's
    # mixture weights.
    with np.errstate(divide="ignore"):
      log_ratio = np.log(users.cluster_prob[u]) - log_mass
    log_weight = log_popularity + log_ratio[movies.cluster]
    k = counts[u]
    if k < m:
      keys = log_weight - np.log(-np.log(rng.random(m)))
      chosen = np.argpartition(-keys, k - 1)[:k]
    else:
      chosen = np.arange(m)
    movie_index[row_start[u]:row_start[u + 1]] = rng.permutation(chosen)
  return movie_index


def _sample_light_block(block, k, cluster_prob, sampler, draws_needed, mbits,
                        max_rate, movie_index, row_start, rng):
  """Samples the users in `block` by Poissonized draws; returns those short.

  Entries are packed in int64 as (user, priority, movie) bit fields, so both
  the dedupe and the per-user selection are plain value sorts.
  """
  num = len(block)
  ubits = max(int(num - 1).bit_length(), 1)
  pbits = 63 - ubits - mbits
  movie_mask = (1 << mbits) - 1
  prio_mask = (1 << pbits) - 1
  have = np.zeros(num, dtype=np.int64)
  entries = np.empty(0, dtype=np.int64)
  active = np.arange(num)
  for round_ in range(_MAX_TOP_UP_ROUNDS):
    # The estimate ignores users' taste concentration, hence the margins.
    if round_ == 0:
      rate = draws_needed(k) * 1.5 + 2
    else:
      gap = draws_needed(k[active]) - draws_needed(have[active])
      rate = np.minimum(np.maximum(gap, 0) * 1.5 * 2**round_ +
                        2 * (k[active] - have[active]), max_rate)
    draw_user, draw_movie = sampler.sample(rate, cluster_prob[block[active]],
                                           rng)
    draw_user = active[draw_user]
    draw_prio = rng.integers(0, 1 << pbits, len(draw_user), dtype=np.int64)
    new = ((draw_user << (pbits + mbits)) | (draw_prio << mbits) | draw_movie)
    if round_ > 0:
      is_active = np.zeros(num, dtype=bool)
      is_active[active] = True
      active_entry = is_active[entries >> (pbits + mbits)]
      kept = entries[~active_entry]
      new = np.concatenate([entries[active_entry], new])
    else:
      kept = entries
    # Dedupe (user, movie), keeping an arbitrary copy: its priority is still
    # uniform.
    user = new >> (pbits + mbits)
    by_movie = np.sort((((user << mbits) | (new & movie_mask)) << pbits) |
                       ((new >> mbits) & prio_mask))
    pair = by_movie >> pbits
    first = np.ones(len(pair), dtype=bool)
    first[1:] = pair[1:] != pair[:-1]
    by_movie = by_movie[first]
    user = by_movie >> (pbits + mbits)
    # Keep each user's k lowest priorities.
    selected = np.sort((user << (pbits + mbits)) |
                       ((by_movie & prio_mask) << mbits) |
                       ((by_movie >> pbits) & movie_mask))
    user = selected >> (pbits + mbits)
    selected = selected[_rank_in_groups(user) < k[user]]
    have[active] = 0
    have += np.bincount(selected >> (pbits + mbits), minlength=num)
    entries = np.concatenate([kept, selected])
    active = np.flatnonzero(have < k)
    if not len(active):
      break
  entries = np.sort(entries)
  user = entries >> (pbits + mbits)
  rank = _rank_in_groups(user)
  done = have[user] == k[user]
  rows = row_start[block[user[done]]] + rank[done]
  movie_index[rows] = (entries[done] & movie_mask).astype(np.int32)
  return active


def _rank_in_groups(keys):
  """Position of each element within its run of equal sorted keys."""
  num = len(keys)
  starts = np.flatnonzero(np.concatenate([[True], keys[1:] != keys[:-1]]))
  lengths = np.diff(np.append(starts, num))
  return np.arange(num) - np.repeat(starts, lengths)


class _MixtureSampler:
  """Poissonized draws from users' cluster-mixture movie distributions.

  A user's weight on movie m is popularity[m] * ratio[c(m)], with ratio =
  cluster_prob / cluster popularity mass. The `head_size` most popular movies
  are included directly with probability 1 - exp(-rate * weight); the tail
  is drawn, with Walker alias tables per cluster making each draw O(1).
  """

  def __init__(self, popularity, cluster, num_clusters, head_size):
    self.head_size = head_size
    self.mass = np.bincount(cluster, weights=popularity, minlength=num_clusters)
    by_popularity = np.argsort(-popularity, kind="stable")
    self.head_movie = by_popularity[:head_size]
    self.head_popularity = popularity[self.head_movie]
    self.head_cluster = cluster[self.head_movie]
    tail = np.sort(by_popularity[head_size:])
    self.tail_mass = np.bincount(cluster[tail], weights=popularity[tail],
                                 minlength=num_clusters)
    order = tail[np.argsort(cluster[tail], kind="stable")]
    sizes = np.bincount(cluster[tail], minlength=num_clusters)
    self.begin = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    self.sizes = sizes
    prob = np.ones(len(order))
    alias = np.arange(len(order))
    for c in np.flatnonzero(sizes):
      sl = slice(self.begin[c], self.begin[c] + sizes[c])
      p, a = _alias_table(popularity[order[sl]])
      prob[sl] = p
      alias[sl] = a + self.begin[c]
    self.prob = prob
    self.movie = order.astype(np.int64)
    self.alias_movie = order[alias].astype(np.int64)

  def sample(self, rate, cluster_prob, rng):
    """Returns (row, movie) int64 draws for rows of `rate`/`cluster_prob`.

    Args:
      rate: (B,) expected number of with-replacement draws per row.
      cluster_prob: (B, K) each row's cluster probabilities.
      rng: The generator.

    Returns:
      Row and movie of each draw, grouped by row; a head movie appears at
      most once per row.
    """
    ratio = np.divide(cluster_prob, self.mass, out=np.zeros_like(cluster_prob),
                      where=self.mass > 0)
    head_weight = ratio[:, self.head_cluster]
    head_weight *= self.head_popularity
    head_weight *= -rate[:, None]
    np.expm1(head_weight, out=head_weight)
    head_row, head_j = np.nonzero(rng.random(head_weight.shape) < -head_weight)
    del head_weight

    per_cluster = rng.poisson(rate[:, None] * ratio * self.tail_mass)
    num_clusters = len(self.sizes)
    tail_row = np.repeat(np.arange(len(rate)), per_cluster.sum(axis=1))
    cluster = np.repeat(np.tile(np.arange(num_clusters), len(rate)),
                        per_cluster.ravel())
    x = rng.random(len(cluster)) * self.sizes[cluster]
    j = x.astype(np.int64)
    np.minimum(j, self.sizes[cluster] - 1, out=j)
    pos = self.begin[cluster] + j
    tail_movie = np.where(x - j < self.prob[pos], self.movie[pos],
                          self.alias_movie[pos])
    return (np.concatenate([head_row, tail_row]),
            np.concatenate([self.head_movie[head_j], tail_movie]))


def _alias_table(p):
  """Vose's alias method for probabilities proportional to p."""
  n = len(p)
  scaled = (p * (n / p.sum())).tolist()
  prob = [1.0] * n
  alias = list(range(n))
  small = [i for i, q in enumerate(scaled) if q < 1]
  large = [i for i, q in enumerate(scaled) if q >= 1]
  while small and large:
    s, l = small.pop(), large.pop()
    prob[s], alias[s] = scaled[s], l
    scaled[l] += scaled[s] - 1
    (small if scaled[l] < 1 else large).append(l)
  return np.array(prob), np.array(alias, dtype=np.int64)


def _draws_needed_fn(popularity):
  """Returns k -> with-replacement draws expected to give k distinct movies.

  Uses the expected distinct count under global popularity, sum(1 - exp(-n
  p)); it returns inf where k is out of reach.
  """
  grid = np.geomspace(1, 1e4 * len(popularity), 160)
  distinct = np.array([np.sum(-np.expm1(-g * popularity)) for g in grid])
  # Equal values at the top of the curve would break interpolation.
  distinct = np.maximum.accumulate(distinct)
  reach = distinct[-1] * 0.999

  def draws_needed(k):
    k = np.asarray(k, dtype=np.float64)
    n = np.interp(k, distinct, grid)
    return np.where(k <= reach, np.maximum(n, k), np.inf)

  return draws_needed


def _cover_all_movies(movie_index, num_movies, rng):
  """Hands every unrated movie one rating, taken from a movie with spares.

  Rows are picked uniformly, so heavy users and popular movies give them up
  (in MovieLens too, heavy users rate most of the obscure movies).
  Distinctness per user holds because the new movie had no ratings at all.
  """
  counts = np.bincount(movie_index, minlength=num_movies)
  unrated = np.flatnonzero(counts == 0)
  unrated = rng.permutation(unrated)
  while len(unrated):
    rows = np.unique(rng.integers(0, len(movie_index), 2 * len(unrated) + 16))
    rows = rng.permutation(rows)
    movie = movie_index[rows]
    # At most count - 1 rows per movie may move, so none becomes unrated.
    order = np.argsort(movie, kind="stable")
    sorted_movie = movie[order]
    rank = np.arange(len(rows)) - np.searchsorted(sorted_movie, sorted_movie)
    ok = np.empty(len(rows), dtype=bool)
    ok[order] = rank < counts[sorted_movie] - 1
    rows = rows[ok][:len(unrated)]
    np.subtract.at(counts, movie_index[rows], 1)
    movie_index[rows] = unrated[:len(rows)]
    counts[unrated[:len(rows)]] += 1
    unrated = unrated[len(rows):]


def _rate(spec, movies, users, user_of_row, movie_index, rng):
  """Scores each row, adds noise, quantizes; returns rating and oracle."""
  num = spec.num_ratings
  score = np.empty(num, dtype=np.float32)
  noisy = np.empty(num, dtype=np.float32)
  for start in range(0, num, _ROW_BLOCK):
    sl = slice(start, start + _ROW_BLOCK)
    u, m = user_of_row[sl], movie_index[sl]
    s = users.bias[u] + movies.bias[m]
    s += np.einsum("ij,ij->i", users.factors[u], movies.factors[m])
    score[sl] = s
    noisy[sl] = s + spec.noise_std * rng.standard_normal(len(s),
                                                         dtype=np.float32)
  # Cut points at the quantiles of the target histogram, estimated on a
  # sample: the histogram then matches whatever the signal's spread.
  sample = noisy if num <= 1 << 20 else noisy[rng.integers(0, num, 1 << 20)]
  share = np.asarray(spec.rating_share, dtype=np.float64)
  cuts = np.quantile(sample.astype(np.float64), np.cumsum(share)[:-1])
  cuts = np.maximum.accumulate(cuts).astype(np.float32)
  level = np.zeros(num, dtype=np.int8)
  for c in cuts:
    level += noisy >= c
  rating = RATING_LEVELS[level]
  del noisy
  # Liked (> 3) means noisy >= the cut above level 3.0, so
  # P(liked) = P(noise >= cut - score) = Phi((score - cut) / noise_std).
  liked_cut = cuts[int(np.searchsorted(RATING_LEVELS, LIKED_THRESHOLD))]
  oracle = score
  oracle -= liked_cut
  oracle *= np.float32(1 / spec.noise_std)
  _normal_cdf_(oracle)
  return rating, oracle


def _normal_cdf_(x):
  """In place Phi(x) for float32 x, via Abramowitz-Stegun 7.1.26 for erf.

  The absolute error is below 1e-7, under float32 resolution near 1; scipy
  is not a dependency.
  """
  for start in range(0, len(x), _ROW_BLOCK):
    z = x[start:start + _ROW_BLOCK].astype(np.float64) * (1 / math.sqrt(2))
    a = np.abs(z)
    t = 1 / (1 + 0.3275911 * a)
    poly = t * (0.254829592 + t * (-0.284496736 + t * (
        1.421413741 + t * (-1.453152027 + t * 1.061405429))))
    erf = 1 - poly * np.exp(-a * a)
    x[start:start + _ROW_BLOCK] = 0.5 * (1 + np.copysign(erf, z))


def _timestamps(counts, user_of_row, rng):
  """Per-user sessions in 1996-2023; times sorted within each user."""
  n = len(counts)
  # Log-normal session length: many users rate in one sitting, some over
  # years; heavier users take longer.
  duration = np.exp(np.log(6 * 3600) + 2.5 * rng.standard_normal(n))
  duration *= np.sqrt(counts / counts.min())
  span = _LAST_TIMESTAMP - _FIRST_TIMESTAMP
  duration = np.clip(duration, 20.0 * counts, span)
  start = _FIRST_TIMESTAMP + rng.random(n) * (span - duration)
  # Sorting user + uniform keeps rows grouped by user and sorts the uniforms
  # within each user.
  offset = np.sort(user_of_row + rng.random(len(user_of_row)))
  offset -= user_of_row
  offset *= duration[user_of_row]
  offset += start[user_of_row]
  return np.floor(offset).astype(np.int64)


def _numeric_strings(values):
  values = np.asarray(values)
  return values.astype(f"U{len(str(values.max()))}")
