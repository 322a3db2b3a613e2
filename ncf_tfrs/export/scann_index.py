"""The ScaNN index of the movie embeddings: settings and builders.

The same resolved settings build the Python searcher (written beside the
stock model, used by `ncf_tfrs.serving`) and the TF op's searcher (inside
the ScaNN-op SavedModel), so the two return the same candidates.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Optional

import numpy as np


@dataclasses.dataclass(frozen=True)
class ScannConfig:
  """ScaNN index settings; None picks a value from the catalog size N.

  Attributes:
    num_neighbors: Candidates a search returns by default (C).
    num_leaves: Partitions of the tree; default ~sqrt(N). Catalogs under
      `min_tree_size` get no tree (AH scoring of every movie).
    leaves_to_search_fraction: Share of leaves searched per query
      (docs/results/tuning.md); isotropic random vectors need far more.
    num_leaves_to_search: Overrides the fraction when set.
    dimensions_per_block: Anisotropic hashing: dimensions per 4-bit code.
    anisotropic_quantization_threshold: AH's threshold (ScaNN recommends 0.2
      for dot products).
    reordering_num_neighbors: AH candidates rescored exactly; default
      4 * num_neighbors.
    training_sample_size: Movies sampled to train the tree.
    kmeans_plus_plus: Seed the tree with k-means++ rather than random
      centers: the same embeddings always give the same index, where random
      seeding made recall vary from build to build.
    min_tree_size: Smallest catalog that gets a tree. Below it, scoring
      every movie (AH, then exact reordering) is fast enough and a tree only
      loses recall (docs/results/tuning.md).
  """
  num_neighbors: int = 200
  num_leaves: Optional[int] = None
  leaves_to_search_fraction: float = 0.2
  num_leaves_to_search: Optional[int] = None
  dimensions_per_block: int = 2
  anisotropic_quantization_threshold: float = 0.2
  reordering_num_neighbors: Optional[int] = None
  training_sample_size: int = 100_000
  kmeans_plus_plus: bool = True
  min_tree_size: int = 10_000

  def resolve(self, num_movies: int) -> dict[str, int | float | None]:
    """The concrete settings for a catalog of `num_movies` (for manifests)."""
    if num_movies < 1:
      raise ValueError("The ScaNN index needs at least one movie.")
    leaves = None
    to_search = None
    if num_movies >= self.min_tree_size:
      leaves = self.num_leaves or max(2, round(math.sqrt(num_movies)))
      leaves = min(leaves, num_movies)
      to_search = self.num_leaves_to_search or math.ceil(
          leaves * self.leaves_to_search_fraction)
      to_search = max(1, min(to_search, leaves))
    num_neighbors = min(self.num_neighbors, num_movies)
    reorder = self.reordering_num_neighbors or 4 * num_neighbors
    return {
        "num_movies": num_movies,
        "num_neighbors": num_neighbors,
        "num_leaves": leaves,
        "num_leaves_to_search": to_search,
        "dimensions_per_block": self.dimensions_per_block,
        "anisotropic_quantization_threshold":
            self.anisotropic_quantization_threshold,
        "reordering_num_neighbors": max(reorder, num_neighbors),
        "training_sample_size": min(self.training_sample_size, num_movies),
        "kmeans_plus_plus": self.kmeans_plus_plus,
    }


def configure_scann(builder, settings: dict):
  """Applies resolved `ScannConfig` settings to a scann builder (any flavour).

  The same settings build the Python searcher and the TF op's searcher, so
  the two return the same candidates.
  """
  if settings["num_leaves"]:
    builder = builder.tree(
        num_leaves=settings["num_leaves"],
        num_leaves_to_search=settings["num_leaves_to_search"],
        training_sample_size=settings["training_sample_size"],
        random_init=not settings["kmeans_plus_plus"])
  return builder.score_ah(
      settings["dimensions_per_block"],
      anisotropic_quantization_threshold=settings[
          "anisotropic_quantization_threshold"]).reorder(
              settings["reordering_num_neighbors"])


def build_scann_searcher(embeddings: np.ndarray,
                         config: ScannConfig = ScannConfig()):
  """A scann Python searcher (dot product) over `embeddings` [N, D]."""
  from scann.scann_ops.py import scann_ops_pybind  # pylint: disable=g-import-not-at-top
  embeddings = np.ascontiguousarray(embeddings, dtype=np.float32)
  settings = config.resolve(len(embeddings))
  builder = scann_ops_pybind.builder(
      embeddings, settings["num_neighbors"], "dot_product")
  return configure_scann(builder, settings).build()
