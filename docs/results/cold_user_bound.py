"""How well can anything serve a new user from 10 ratings on SYNTHETIC synthetic-32m?

An analysis script behind docs/results/new_users.md, not part of the package.
The generator (`ncf_tfrs.datasets.movielens_users.synthetic`) planted every
parameter, so the best possible served list is computable:

- `oracle`: the user's true parameters known; each movie ranked by
  P(in the user's later ratings) x P(liked | user, movie). Nothing that sees
  only a user's ratings can know this much.
- `posterior`: only what a model could know: the generator's movie side and
  its prior over users, exactly, and the user's first 10 (movie, rating)
  pairs. Movies are ranked by the posterior mean of the same product, the
  posterior over the user's factors and bias importance-sampled from the
  prior (the likelihood: the given movies' taste clusters and their rating
  levels). Up to Monte Carlo error this is the best ranking from 10 ratings;
  it also uses the user's true number of ratings (in its favour).
- `most_rated`: the fallback, the most rated movies of the training users.

Users, given ratings and later liked movies are those of the product's
cold-user evaluation (`--cold_user_fraction=0.1 --seed=42`, first 10 by
time). Liked recall@10 over movies not given, averaged over sampled users.

Usage: python docs/results/cold_user_bound.py <tfds data_dir with
synthetic-32m> [prior samples] [users] [user sample seed]
"""

import math
import os
import sys

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

import numpy as np  # noqa: E402

from ncf_tfrs import data as data_lib  # noqa: E402
from ncf_tfrs.datasets.movielens_users import synthetic  # noqa: E402

GIVEN = 10
LIST = 10


def normal_cdf(x):
  """Phi(x), Abramowitz-Stegun 7.1.26 (absolute error < 1e-7)."""
  z = np.asarray(x, dtype=np.float64) / math.sqrt(2)
  a = np.abs(z)
  t = 1 / (1 + 0.3275911 * a)
  poly = t * (0.254829592 + t * (-0.284496736 + t * (
      1.421413741 + t * (-1.453152027 + t * 1.061405429))))
  return 0.5 * (1 + np.copysign(1 - poly * np.exp(-a * a), z))


def main(data_dir, num_samples=100_000, num_users=1200, seed=1):
  spec = synthetic.SPECS["synthetic-32m"]
  # The generator's first two streams: its movie side and its users.
  movie_rng, user_rng = [np.random.default_rng(s) for s in
                         np.random.SeedSequence(spec.seed).spawn(6)][:2]
  movies = synthetic._make_movies(spec, movie_rng)  # pylint: disable=protected-access
  users = synthetic._make_users(spec, movies, user_rng)  # pylint: disable=protected-access
  ratings = data_lib.load("synthetic-32m", data_dir)
  kept, cold = data_lib.hold_out_users(ratings, 0.1, 42)
  given, later = data_lib.first_by_time(cold, GIVEN)
  planted_user = np.array([int(u) - 1 for u in ratings.user_ids.astype(str)])
  position = {int(i): k for k, i in enumerate(movies.ids)}
  planted_movie = np.array([position[int(m)]
                            for m in ratings.movie_ids.astype(str)])
  popularity = movies.popularity[planted_movie]
  cluster = movies.cluster[planted_movie]
  factors = movies.factors[planted_movie].astype(np.float64)
  bias = movies.bias[planted_movie].astype(np.float64)
  mass = np.bincount(movies.cluster, weights=movies.popularity,
                     minlength=spec.num_taste_clusters)
  share_in_cluster = popularity / mass[cluster]

  # The rating levels' cut points: quantiles of the noisy planted score at
  # the data's level shares, as the generator set them.
  rows = np.random.default_rng(0).integers(0, len(ratings), 400_000)
  u, m = planted_user[ratings.user[rows]], planted_movie[ratings.movie[rows]]
  score = (users.bias[u] + movies.bias[m] +
           np.einsum("ij,ij->i", users.factors[u], movies.factors[m]))
  noisy = score + spec.noise_std * np.random.default_rng(5).standard_normal(
      len(score))
  levels = np.array(synthetic.RATING_LEVELS)
  shares = np.array([np.mean(ratings.rating[rows] == x) for x in levels])
  cuts = np.quantile(noisy, np.cumsum(shares)[:-1])
  liked_cut = cuts[np.searchsorted(levels, 3.0)]

  # Prior samples of a user, drawn as `_make_users` draws them.
  rng = np.random.default_rng(7)
  sample_factors = rng.standard_normal((num_samples, spec.rank)) * (
      spec.interaction_std / math.sqrt(spec.rank))
  sample_bias = spec.user_bias_std * rng.standard_normal(num_samples)
  affinity_std = (users.factors.astype(np.float64) @ movies.centroids.T).std()
  logits = spec.choice_strength * (sample_factors @ movies.centroids.T) / (
      affinity_std)
  cluster_prob = mass * np.exp(logits - logits.max(axis=1, keepdims=True))
  cluster_prob /= cluster_prob.sum(axis=1, keepdims=True)

  def by_user(r):
    order = np.argsort(r.user, kind="stable")
    return r.user[order], r.movie[order], r.rating[order]

  given_user, given_movie, given_rating = by_user(given)
  later_user, later_movie, later_rating = by_user(later)
  counts = np.bincount(kept.movie, minlength=len(ratings.movie_ids))
  most_rated = np.argsort(-counts, kind="stable")
  num_ratings = np.bincount(ratings.user, minlength=len(ratings.user_ids))
  sample = np.sort(np.random.default_rng(seed).choice(
      np.unique(given_user), num_users, replace=False))
  recalls = {"most_rated": [], "posterior": [], "oracle": []}
  sizes = []
  for user in sample:
    a, b = np.searchsorted(given_user, [user, user + 1])
    movies_given, levels_given = given_movie[a:b], given_rating[a:b]
    c, d = np.searchsorted(later_user, [user, user + 1])
    liked = set(later_movie[c:d][later_rating[c:d] > 3].tolist())
    if not liked:
      continue
    # Posterior weights: the given movies' clusters and rating levels.
    log_like = np.log(cluster_prob[:, cluster[movies_given]]).sum(axis=1)
    s = (sample_bias[:, None] + bias[movies_given][None, :] +
         sample_factors @ factors[movies_given].T)
    level = np.searchsorted(levels, levels_given)
    low = np.where(level > 0, cuts[np.maximum(level - 1, 0)], -np.inf)
    high = np.where(level < len(cuts), cuts[np.minimum(level, len(cuts) - 1)],
                    np.inf)
    p = (normal_cdf((high - s) / spec.noise_std) -
         normal_cdf((low - s) / spec.noise_std))
    log_like += np.log(np.maximum(p, 1e-300)).sum(axis=1)
    weights = np.exp(log_like - log_like.max())
    weights /= weights.sum()
    sizes.append(1 / np.sum(weights ** 2))
    top = np.argsort(-weights)[:200]
    top_weights = weights[top] / weights[top].sum()
    n = num_ratings[user]

    def expected_hits(prob, user_factors, user_bias):
      """P(in the user's ratings) x P(liked), per movie."""
      seen = 1 - np.exp(-n * prob[..., cluster] * share_in_cluster)
      liked_prob = normal_cdf(
          (user_bias + bias + user_factors @ factors.T - liked_cut) /
          spec.noise_std)
      return seen * liked_prob

    lists = {
        "posterior": top_weights @ expected_hits(
            cluster_prob[top], sample_factors[top], sample_bias[top][:, None]),
        "oracle": expected_hits(users.cluster_prob[planted_user[user]],
                                users.factors[planted_user[user]],
                                users.bias[planted_user[user]]),
    }
    unseen = np.ones(len(popularity), dtype=bool)
    unseen[movies_given] = False
    for name, value in lists.items():
      best = np.argpartition(-np.where(unseen, value, -np.inf), LIST)[:LIST]
      recalls[name].append(len(liked & set(best.tolist())) / len(liked))
    fallback = [x for x in most_rated[:LIST + GIVEN] if unseen[x]][:LIST]
    recalls["most_rated"].append(len(liked & set(fallback)) / len(liked))
  base = np.mean(recalls["most_rated"])
  for name, values in recalls.items():
    sd = np.std(values) / math.sqrt(len(values))
    print(f"{name}: liked recall@{LIST} {np.mean(values):.4f} ± {sd:.4f} "
          f"({np.mean(values) / base:.2f}x most rated), {len(values)} users")
  print(f"median effective sample size {np.median(sizes):.0f} of "
        f"{num_samples} prior samples")


if __name__ == "__main__":
  main(sys.argv[1], *[int(x) for x in sys.argv[2:]])
