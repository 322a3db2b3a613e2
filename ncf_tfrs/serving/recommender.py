"""Serving: ScaNN candidates, then the NCF rerank, in process or via TF Serving.

`Recommender` answers "top k movies for these users": the stock SavedModel's
`user_embedding` signature gives each user's query embedding and whether the
user is unknown; the exported ScaNN index (scann's Python searcher) finds the
top C candidates of known users less the movies they rated (the export's
history, rated.npz, plus what the caller says they have seen since); the
`score` signature scores them in the served order (retrieval logit + NCF
log-probability) and the top k are kept here. Unknown users get the most
rated unseen movies instead, flagged `is_fallback`. `rerank` (a user's own
candidates) goes through the `rerank` signature, which leaves the history
out and counts repeated candidates once in the graph.

The SavedModel runs behind a `Backend` (`ncf_tfrs.serving.backends`): in
process by default, or in TF Serving over REST or gRPC.

ScaNN always runs here, beside TF Serving: stock TF Serving has no ScaNN op.
Requests name the version they were built against, so the index and the
served model always come from the same export.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Iterable, Optional, Sequence

import numpy as np

from ncf_tfrs.serving import backends
from ncf_tfrs.serving import catalog as catalog_lib
from ncf_tfrs.serving import contract
from ncf_tfrs.serving.contract import Input
from ncf_tfrs.serving.contract import Output
from ncf_tfrs.serving.contract import Signature


@dataclasses.dataclass(frozen=True)
class Recommendation:
  """One user's served list, best first."""
  user_id: str
  movie_ids: list[str]
  titles: list[str]
  scores: list[float]
  is_fallback: bool


def _check_ids(values, field: str) -> list[str]:
  if isinstance(values, (str, bytes)) or not isinstance(
      values, (Sequence, np.ndarray)):
    raise ValueError(f"{field} must be a list of string ids, got "
                     f"{type(values).__name__}.")
  if np.ndim(values) != 1:
    raise ValueError(f"{field} must be a one-dimensional list of ids, got "
                     f"shape {np.shape(values)}.")
  values = list(values)
  if not values:
    raise ValueError(f"{field} is empty.")
  out = []
  for value in values:
    if isinstance(value, bytes):
      value = value.decode()
    if not isinstance(value, str) or not value:
      raise ValueError(f"{field} must hold non-empty string ids, got "
                       f"{value!r}.")
    out.append(value)
  return out


def _check_k(k, limit: int, field: str = "k") -> int:
  if isinstance(k, bool) or not isinstance(k, (int, np.integer)):
    raise ValueError(f"{field} must be an integer, got {k!r}.")
  if not 1 <= k <= limit:
    raise ValueError(f"{field} must be between 1 and {limit}, got {k}.")
  return int(k)


class Recommender:
  """User ids in, top-k movie ids, titles and scores out.

  Build it with `Recommender.load` (in process), or give it a
  `RestBackend`/`GrpcBackend` and the same export's `Catalog`.
  """

  def __init__(self, backend: backends.Backend, catalog: catalog_lib.Catalog,
               num_candidates: Optional[int] = None) -> None:
    """Initializes the recommender.

    Args:
      backend: Runs the stock SavedModel's signatures.
      catalog: The ScaNN index and movies of the backend's version.
      num_candidates: ScaNN candidates reranked per user (C); default the
        export's.
    """
    if catalog.manifest.get("version") not in (None, backend.version):
      raise ValueError(
          f"The index is version {catalog.manifest['version']} but the model "
          f"is version {backend.version}; they must come from one export.")
    self.backend = backend
    self.catalog = catalog
    self.num_candidates = _check_k(
        num_candidates or catalog.manifest["scann"]["num_neighbors"],
        len(catalog), "num_candidates")

  @classmethod
  def load(cls, export_dir: str, model_name: str = "ncf_tfrs",
           version: Optional[int] = None,
           num_candidates: Optional[int] = None) -> Recommender:
    """The in-process recommender over an export (latest version default)."""
    version = contract.checked_version(export_dir, model_name, version)
    backend = backends.EmbeddedBackend(
        os.path.join(export_dir, model_name, str(version)))
    return cls(backend,
               catalog_lib.load_catalog(export_dir, model_name, version),
               num_candidates)

  def _seen_rows(self, seen, num_users: int) -> list[np.ndarray]:
    if seen is None:
      return [np.zeros(0, np.int64)] * num_users
    if isinstance(seen, (str, bytes)) or len(seen) != num_users:
      raise ValueError("seen must hold one list of movie ids per user.")
    rows = []
    for movies in seen:
      if isinstance(movies, (str, bytes)):
        raise ValueError("seen must hold one list of movie ids per user.")
      rows.append(np.array(
          [r for r in (self.catalog.row.get(
              m.decode() if isinstance(m, bytes) else m) for m in movies)
           if r is not None], dtype=np.int64))
    return rows

  def _history_inputs(self, history, num_users: int) -> dict:
    """Per-user (movie id, rating) pairs -> the `*_history` signatures'
    padded [B, H] inputs."""
    if not self.catalog.manifest.get("history_side"):
      raise ValueError("This export has no history side: train with "
                       "--history_share > 0 to serve users from ratings.")
    if isinstance(history, (str, bytes)) or len(history) != num_users:
      raise ValueError("history must hold one list of (movie id, rating) "
                       "pairs per user.")
    width = max([len(pairs) for pairs in history] + [1])
    ids = np.full((num_users, width), contract.PADDING_ID, dtype=object)
    ratings = np.zeros((num_users, width), np.float32)
    for i, pairs in enumerate(history):
      for j, pair in enumerate(pairs):
        if (isinstance(pair, (str, bytes)) or len(pair) != 2 or
            not isinstance(pair[0], str) or not pair[0] or
            isinstance(pair[1], bool) or
            not isinstance(pair[1], (int, float, np.number)) or
            not 0.5 <= pair[1] <= 5.0):
          raise ValueError(f"history of user {i}, entry {j}: expected a "
                           f"(movie id, rating 0.5-5) pair, got {pair!r}.")
        ids[i, j], ratings[i, j] = pair
    return {Input.HISTORY_MOVIE_ID: ids, Input.HISTORY_RATING: ratings}

  def recommend(self, user_ids: Sequence[str], k: int = 10,
                seen: Optional[Sequence[Iterable[str]]] = None,
                include_seen: bool = False,
                history: Optional[Sequence[Sequence[tuple[str, float]]]]
                = None) -> list[Recommendation]:
    """Top k distinct movies per user, none the user has rated.

    Left out by default: the movies each user rated in training (the
    export's history), any given in `seen` (ratings made since) and those
    in `history`.

    Args:
      user_ids: Raw user ids.
      k: Length of each list.
      seen: Optional, per user: more movie ids to leave out.
      include_seen: Keep the training history in (re-watch lists); `seen`
        and `history` are still left out.
      history: Optional, per user: (movie id, rating) pairs the user gave.
        A user the model never saw is served from them (with none of a
        known movie: the most rated movies, `is_fallback`); users it knows
        keep their own. Needs an export with a history side.

    Returns:
      One `Recommendation` per user, in order; shorter than k only when the
      user has rated all but fewer than k movies.
    """
    user_ids = _check_ids(user_ids, "user_ids")
    k = _check_k(k, len(self.catalog))
    seen_rows = self._seen_rows(seen, len(user_ids))
    users = np.array(user_ids, dtype=object)
    inputs = {Input.USER_ID: users}
    if history is not None:
      inputs.update(self._history_inputs(history, len(user_ids)))
      seen_rows = [np.union1d(row, given) for row, given in zip(
          seen_rows, self._seen_rows(
              [[m for m, _ in pairs] for pairs in history], len(user_ids)))]
    if not include_seen:
      seen_rows = [np.union1d(row, self.catalog.rated(user))
                   for row, user in zip(seen_rows, user_ids)]
    answer = self.backend.predict(
        Signature.USER_EMBEDDING if history is None
        else Signature.USER_EMBEDDING_HISTORY, inputs)
    is_fallback = np.asarray(answer[Output.IS_FALLBACK], dtype=bool)
    width = min(max(self.num_candidates, k), len(self.catalog))
    embeddings = np.asarray(answer[Output.EMBEDDING])
    candidates = np.full((len(users), width), contract.PADDING_ID,
                         dtype=object)
    # Search `width` more than each user has seen at most, then four times
    # as many for the users still short of `width` unseen movies: a heavy
    # user's history costs a deeper search only where it fills the top.
    fetch = np.minimum(width + np.array([min(len(r), width)
                                         for r in seen_rows]),
                       len(self.catalog))
    todo = np.arange(len(users))
    while len(todo):
      size = int(fetch[todo].max())
      known = todo[~is_fallback[todo]]
      found = dict(zip(known, self.catalog.search(embeddings[known], size)))
      short = []
      for i in todo:
        row = found[i] if i in found else np.arange(size)  # Most rated first.
        if len(seen_rows[i]):
          row = row[~np.isin(row, seen_rows[i])]
        if len(row) < width and size < len(self.catalog):
          short.append(i)
          continue
        candidates[i, :min(len(row), width)] = self.catalog.movie_ids[
            row[:width]]
      todo = np.array(short, dtype=np.int64)
      fetch[todo] = np.minimum(4 * fetch[todo], len(self.catalog))
    return self._order_by_score(inputs, candidates, is_fallback, k)

  def rerank(self, user_id: str, movie_ids: Sequence[str],
             k: int) -> Recommendation:
    """The top k of a user's own candidate movies, in the served order."""
    user = _check_ids([user_id], "user_id")
    movie_ids = _check_ids(movie_ids, "movie_ids")
    unknown = [m for m in movie_ids if m not in self.catalog.row]
    if unknown:
      raise ValueError(f"movie_ids has ids the model does not know: "
                       f"{unknown[:10]}{' ...' if len(unknown) > 10 else ''}")
    k = _check_k(k, len(movie_ids))
    candidates = np.array([movie_ids], dtype=object)
    return self._rerank(np.array(user, dtype=object), candidates, k)[0]

  def _order_by_score(self, inputs: dict, candidates: np.ndarray,
                      is_fallback: np.ndarray,
                      k: int) -> list[Recommendation]:
    """The top k of candidates already cleaned here, in the served order.

    `recommend` left the history out and its candidates are distinct, so
    it needs none of `rerank`'s checks (which plain TF Serving clients
    rely on): the `score` signature and a sort here serve both the default
    and re-watch (include_seen) lists. Unknown users keep the popularity
    order of their candidates.
    """
    users = inputs[Input.USER_ID]
    signature = (Signature.SCORE_HISTORY if Input.HISTORY_MOVIE_ID in inputs
                 else Signature.SCORE)
    scores = np.asarray(self.backend.predict(signature, {
        **inputs,
        Input.MOVIE_ID: np.where(candidates == contract.PADDING_ID,
                                 self.catalog.movie_ids[0], candidates)
    })[Output.SCORE], dtype=np.float64)
    results = []
    for user, movies, row_scores, fallback in zip(users, candidates, scores,
                                                  is_fallback):
      keep = np.flatnonzero(movies != contract.PADDING_ID)
      if not fallback:
        keep = keep[np.argsort(-row_scores[keep], kind="stable")]
      keep = keep[:k]
      ids = [str(m) for m in movies[keep]]
      results.append(Recommendation(
          user_id=str(user), movie_ids=ids,
          titles=[str(self.catalog.titles[self.catalog.row[m]]) for m in ids],
          scores=[float(s) for s in row_scores[keep]],
          is_fallback=bool(fallback)))
    return results

  def _rerank(self, users: np.ndarray, candidates: np.ndarray,
              k: int) -> list[Recommendation]:
    out = self.backend.predict(Signature.RERANK, {
        Input.USER_ID: users, Input.MOVIE_ID: candidates,
        Input.K: np.array(min(k, candidates.shape[1]), dtype=np.int32)})
    results = []
    for user, movies, scores, fallback in zip(
        users, out[Output.MOVIE_ID],
        np.asarray(out[Output.SCORE], dtype=np.float64),
        np.asarray(out[Output.IS_FALLBACK], dtype=bool)):
      keep = [i for i, m in enumerate(movies)
              if m != contract.PADDING_ID and
              scores[i] > contract.MASKED_SCORE]
      ids = [str(movies[i]) for i in keep]
      results.append(Recommendation(
          user_id=str(user), movie_ids=ids,
          titles=[str(self.catalog.titles[self.catalog.row[m]]) for m in ids],
          scores=[float(scores[i]) for i in keep],
          is_fallback=bool(fallback)))
    return results
