"""The exported movie table and its ScaNN index: candidate search beside the model."""

from __future__ import annotations

import csv
import json
import os

import numpy as np

from ncf_tfrs.serving import contract


class Catalog:
  """The exported movie table and its ScaNN index (one export version).

  Row i of movies.tsv is datapoint i of the index; rows are most rated
  first, so the first rows are the popularity list. rated.npz, where the
  export has it, holds each training user's rated movies
  (`contract.write_rated`), which `rated` returns so that searches can fetch
  enough candidates beyond them.
  """

  def __init__(self, path: str) -> None:
    self.path = path
    with open(os.path.join(path, contract.MOVIES_FILE),
              encoding="utf-8", newline="") as f:
      rows = list(csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE))
    self.movie_ids = np.array([r["movie_id"] for r in rows], dtype=object)
    self.titles = np.array([r["title"] for r in rows], dtype=object)
    self.genres = [r["genres"].split("|") if r["genres"] else [] for r in rows]
    self.counts = np.array([int(r["count"]) for r in rows], dtype=np.int64)
    self.row = {movie_id: i for i, movie_id in enumerate(self.movie_ids)}
    with open(os.path.join(path, contract.MANIFEST_FILE)) as f:
      self.manifest = json.load(f)
    self._searcher = None
    self._rated_splits = np.zeros(1, np.int64)
    self._rated_movies = np.zeros(0, np.int32)
    self._rated_row = {}
    rated = os.path.join(path, contract.RATED_FILE)
    if os.path.exists(rated):
      user_ids, self._rated_splits, self._rated_movies = contract.read_rated(
          rated)
      self._rated_row = {u.decode(): i for i, u in enumerate(user_ids)}

  def rated(self, user_id: str) -> np.ndarray:
    """Catalog rows of the movies `user_id` rated in training (none if the
    user is unknown or the export has no history)."""
    i = self._rated_row.get(user_id)
    if i is None:
      return np.zeros(0, np.int64)
    return self._rated_movies[self._rated_splits[i]:self._rated_splits[i + 1]]

  def __len__(self) -> int:
    return len(self.movie_ids)

  @property
  def searcher(self):
    """The scann Python searcher, loaded on first use."""
    if self._searcher is None:
      from scann.scann_ops.py import scann_ops_pybind  # pylint: disable=g-import-not-at-top
      self._searcher = scann_ops_pybind.load_searcher(
          os.path.join(self.path, contract.SCANN_DIR))
    return self._searcher

  def search(self, embeddings: np.ndarray, num: int) -> np.ndarray:
    """Rows of the top `num` movies [B, num] for query embeddings [B, D].

    ScaNN looks only in the partitions (leaves) nearest a query, and those
    can hold fewer than `num` movies in all: it then returns a short list
    (one query) or pads the row with movie 0 and a NaN score (a batch). Such
    queries are searched again over every leaf, so each row always holds
    `num` distinct movies.
    """
    embeddings = np.ascontiguousarray(embeddings, dtype=np.float32)
    num = min(num, len(self))
    if not len(embeddings):  # ScaNN fails on an empty batch.
      return np.zeros((0, num), dtype=np.int64)
    reorder = max(num, self._reorder)
    if len(embeddings) == 1:
      rows, _ = self.searcher.search(embeddings[0], final_num_neighbors=num,
                                     pre_reorder_num_neighbors=reorder)
      if len(rows) < num:
        rows = self._search_every_leaf(embeddings[0], num, reorder)
      return np.asarray(rows, dtype=np.int64)[np.newaxis]
    rows, scores = self.searcher.search_batched_parallel(
        embeddings, final_num_neighbors=num, pre_reorder_num_neighbors=reorder)
    rows = np.array(rows, dtype=np.int64)
    for i in np.flatnonzero(np.isnan(scores).any(axis=1)):
      rows[i] = self._search_every_leaf(embeddings[i], num, reorder)
    return rows

  def _search_every_leaf(self, embedding: np.ndarray, num: int,
                         reorder: int) -> np.ndarray:
    rows, _ = self.searcher.search(
        embedding, final_num_neighbors=num, pre_reorder_num_neighbors=reorder,
        leaves_to_search=int(self.manifest["scann"]["num_leaves"]))
    return np.asarray(rows, dtype=np.int64)

  @property
  def _reorder(self) -> int:
    return int(self.manifest["scann"]["reordering_num_neighbors"])


def load_catalog(export_dir: str, model_name: str, version: int) -> Catalog:
  """The index and movie table of one export version."""
  return Catalog(os.path.join(export_dir, model_name + contract.INDEX_SUFFIX,
                              str(version)))
