"""Columns -> splits: deterministic train / test (and validation) splits."""

from __future__ import annotations

from typing import Literal

import numpy as np

from ncf_tfrs.data.movielens import Ratings

SplitMethod = Literal["random", "temporal", "stratified"]
SPLIT_METHODS = ("random", "temporal", "stratified")


def _by_user_and_time(ratings: Ratings) -> np.ndarray:
  """Row order by (user, timestamp); free when rows are already so, as `load`
  returns them."""
  user, time = ratings.user, ratings.timestamp
  if ((user[1:] > user[:-1]) |
      ((user[1:] == user[:-1]) & (time[1:] >= time[:-1]))).all():
    return np.arange(len(user))
  return np.lexsort((time, user))


def split(ratings: Ratings,
          method: SplitMethod = "random",
          test_fraction: float = 0.2,
          seed: int = 42) -> tuple[Ratings, Ratings]:
  """Splits ratings deterministically into (train, test).

  'random' is the notebook's split: sklearn's
  `train_test_split(test_size=test_fraction, random_state=seed)` over the
  ratings in ratings.csv order (user, then movie), reproduced without sklearn:
  the first ceil(test_fraction * n) rows of a RandomState(seed) permutation are
  the test set. For ml-32m this gives the notebook's 25,600,163 / 6,400,041.

  'temporal' holds out each user's latest ratings: round(test_fraction * n_u)
  of them, at least one, always leaving one in train. Ties in time are broken
  by the canonical order, so the split is deterministic; `seed` is unused.

  'stratified' is the per-user random split of the literature's ml-100k
  tables (Microsoft Recommenders' `python_stratified_split`): each user's
  ratings in a seeded random order, the last n_u - round((1 - test_fraction)
  * n_u) of them held out, so every user is in both splits in proportion.
  """
  if not 0.0 < test_fraction < 1.0:
    raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}.")
  n = len(ratings)
  if method == "random":
    num_test = int(np.ceil(test_fraction * n))
    if num_test >= n:
      raise ValueError(f"{n} ratings are too few to split {test_fraction}.")
    csv_order = np.argsort(
        ratings.user.astype(np.int64) << 32 | ratings.movie, kind="stable")
    perm = np.random.RandomState(seed).permutation(n)
    is_test = np.zeros(n, dtype=bool)
    is_test[csv_order[perm[:num_test]]] = True
  elif method in ("temporal", "stratified"):
    counts = np.bincount(ratings.user, minlength=len(ratings.user_ids))
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    if method == "temporal":
      order = _by_user_and_time(ratings)
      held = np.clip(np.round(test_fraction * counts), 1, counts - 1)
    else:
      shuffled = np.random.RandomState(seed).permutation(n)
      order = shuffled[np.argsort(ratings.user[shuffled], kind="stable")]
      held = counts - np.round((1.0 - test_fraction) * counts)
    user = ratings.user[order]
    position = np.arange(n) - starts[user]
    is_test = np.empty(n, dtype=bool)
    is_test[order] = position >= (counts - held)[user]
  else:
    raise ValueError(f"split method must be one of {SPLIT_METHODS}, "
                     f"got {method!r}.")
  return ratings.take(~is_test), ratings.take(is_test)


def carve_validation(train: Ratings,
                     method: SplitMethod = "random",
                     fraction: float = 0.1,
                     seed: int = 42) -> tuple[Ratings, Ratings]:
  """Splits a training split into (train, validation) the way `split` did.

  Training makes every choice (epochs kept, early stopping, tuned defaults)
  on this slice, never on the test split, which is scored once at the end.
  The slice is drawn like the test split ('random': a seeded share of the
  ratings; 'temporal': each user's latest training ratings), with its own
  seed, so it is a held-out sample of the same kind.
  """
  return split(train, method, fraction, seed + 1)


def hold_out_users(ratings: Ratings, fraction: float = 0.1,
                   seed: int = 42) -> tuple[Ratings, Ratings]:
  """Splits ratings by user into (kept, held out): a seeded `fraction` of
  the users, with all their ratings, is held out.

  The held-out users are new to a model trained on the kept ratings: the
  cold-user evaluation gives it the first ratings of each
  (`first_by_time`) and scores its recommendations on the rest.
  """
  if not 0.0 < fraction < 1.0:
    raise ValueError(f"fraction must be in (0, 1), got {fraction}.")
  users = np.unique(ratings.user)
  num_held = int(round(fraction * len(users)))
  if not 0 < num_held < len(users):
    raise ValueError(f"{len(users)} users are too few to hold out "
                     f"{fraction} of them.")
  held = np.random.RandomState(seed).choice(users, num_held, replace=False)
  is_held = np.isin(ratings.user, held)
  return ratings.take(~is_held), ratings.take(is_held)


def first_by_time(ratings: Ratings, n: int) -> tuple[Ratings, Ratings]:
  """Splits each user's ratings into (their first n by time, the rest);
  ties in time keep the canonical order."""
  if n < 1:
    raise ValueError(f"n must be positive, got {n}.")
  order = _by_user_and_time(ratings)
  user = ratings.user[order]
  starts = np.searchsorted(user, user, side="left")
  is_first = np.empty(len(user), dtype=bool)
  is_first[order] = np.arange(len(user)) - starts < n
  return ratings.take(is_first), ratings.take(~is_first)
