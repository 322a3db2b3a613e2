r"""Export for serving: TF Serving SavedModels, a ScaNN index, models.config.

  python -m ncf_tfrs.export --model_dir runs/demo --export_dir export \
      --model_name ncf_tfrs

One export writes the same integer version into three folders of the TF
Serving model root:

  <export_dir>/<model_name>/<version>/        SavedModel, stock TF ops only:
                                              what stock TF Serving loads.
  <export_dir>/<model_name>_index/<version>/  ScaNN index of the movie
                                              embeddings (scann/), movies.tsv
                                              (row i = datapoint i) and
                                              manifest.json.
  <export_dir>/<model_name>_scann/<version>/  SavedModel with the ScaNN op
                                              inside: in process, or custom
                                              TF Serving builds only.

plus `models.config` (stock model only) and example REST request bodies in
`requests/`. Stock TF Serving cannot load ScaNN ops, so candidate lookup runs
beside it (`ncf_tfrs.serving`) with the scann Python searcher over the index,
and the rerank runs in TF Serving.

Each version is written into a dot-prefixed temporary folder next to its
final place (TF Serving ignores names that are not integers) and renamed into
place when complete, the stock model last: a watching server never sees half
a version, and a version whose stock model would not load in stock TF Serving
(an op outside TensorFlow's own) is refused before it is published.

Signatures of the stock model (all take raw string ids; batch dimension B):

  user_embedding  user_id [B] -> embedding [B, D] float32, is_fallback [B]
  score           user_id [B], movie_id [B, C] -> score, ncf_logit,
                  liked_prob [B, C] float32, is_known_movie [B, C] bool
  rerank          user_id [B], movie_id [B, C], k [] int32 -> movie_id [B, k]
                  string, score [B, k] float32, is_fallback [B] bool
  retrieve        user_id [B], k [] int32 -> movie_id [B, k], score [B, k],
                  is_fallback [B]   (exact top-k over the whole catalog)
  serving_default = retrieve

`is_fallback` marks users outside the vocabulary: `retrieve` gives them the
most rated movies and `rerank` orders their candidates by popularity, rather
than an embedding of the unknown-id row passed off as personal. `score` is
the served order (`RecommenderModel.rerank_scores`: retrieval logit + NCF
log-probability). In `rerank`, movie id "" pads a short candidate list, and
padding and unknown movies score `MASKED_SCORE`, below every real candidate.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import shutil
from typing import Callable, Iterable, Optional, Sequence

from absl import app
from absl import flags
from absl import logging

import ncf_tfrs  # pylint: disable=unused-import  (Keras 2 before TensorFlow)
from ncf_tfrs import config as config_lib
from ncf_tfrs import features
from ncf_tfrs import layout
from ncf_tfrs import model as model_lib
from ncf_tfrs import pipeline

import numpy as np  # pylint: disable=g-bad-import-order
import tensorflow as tf  # pylint: disable=g-bad-import-order

MASKED_SCORE = layout.MASKED_SCORE
PADDING_ID = layout.PADDING_ID


class NonStockOpError(ValueError):
  """A SavedModel uses ops that stock TensorFlow Serving does not have."""


@dataclasses.dataclass(frozen=True)
class ScannConfig:
  """ScaNN index settings; None picks a value from the catalog size N.

  Attributes:
    num_neighbors: Candidates a search returns by default (C).
    num_leaves: Partitions of the tree; default ~sqrt(N). Catalogs under
      `min_tree_size` get no tree (AH scoring of every movie).
    leaves_to_search_fraction: Share of leaves searched per query.
      0.2 kept recall@100 >= 0.95 on clustered catalogs from 3k to 1M movies
      (tests, bench_serving); isotropic random vectors need far more.
    num_leaves_to_search: Overrides the fraction when set.
    dimensions_per_block: Anisotropic hashing: dimensions per 4-bit code.
    anisotropic_quantization_threshold: AH's threshold (ScaNN recommends 0.2
      for dot products).
    reordering_num_neighbors: AH candidates rescored exactly; default
      4 * num_neighbors.
    training_sample_size: Movies sampled to train the tree.
    kmeans_plus_plus: Seed the tree with k-means++ rather than random
      centers: the same embeddings always give the same index (random
      seeding gave recall@100 from 0.91 to 0.98 on one test catalog).
    min_tree_size: Smallest catalog that gets a tree. Below 10,000 movies
      scoring every movie (AH, then exact reordering) still answers in well
      under a millisecond, while a tree loses recall: on clustered catalogs
      recall@100 was 0.79 at 1,682 movies and 0.93 at 5,000 with a tree,
      0.999 without (0.996 with a tree from 10,000 up).
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


def _string_spec(shape: Sequence[Optional[int]], name: str) -> tf.TensorSpec:
  return tf.TensorSpec(shape, tf.string, name=name)


_K_SPEC = tf.TensorSpec([], tf.int32, name="k")


class _Untracked:
  """Holds an object without making it part of a SavedModel."""

  def __init__(self, value):
    self.value = value


class ServingModule(tf.Module):
  """The stock-op serving graph: the model plus its catalog, baked in.

  Its functions call the trained `RecommenderModel` (whose StringLookup
  layers map raw ids in the graph) and it keeps the model's variables and
  lookup tables, the catalog's candidate embeddings as a variable (so exact
  retrieval is one matmul and `tf.math.top_k`), and the popularity order for
  users outside the vocabulary. The movie catalog is the model's movie
  vocabulary, which is most rated first: its first k ids are the popularity
  list.
  """

  def __init__(self, model: model_lib.RecommenderModel,
               vocabulary: pipeline.Vocabulary) -> None:
    super().__init__(name="ncf_tfrs_serving")
    # The functions below call the Keras model, but the SavedModel keeps only
    # what they capture: its variables and lookup tables. Saving the Keras
    # objects themselves would serialize every layer's config, vocabularies
    # included (minutes at ml-32m's 200k users), for nothing TF Serving uses.
    self._keras = _Untracked(model)
    self.model_variables = list(model.variables)
    # (model.submodules would find them too, but walks the 200k-id
    # vocabulary lists element by element.)
    self.lookup_tables = [
        tower.lookup.lookup_table
        for tower in (model.query_tower, model.candidate_tower,
                      model.ncf.user_embedding, model.ncf.movie_embedding)]
    movie_ids = np.asarray(vocabulary.movie_ids).astype(bytes)
    self._num_movies = len(movie_ids)
    self.catalog = tf.Variable(movie_ids, trainable=False, name="catalog")
    self.catalog_embeddings = tf.Variable(
        model.candidate_embeddings(tf.constant(movie_ids)),
        trainable=False, name="catalog_embeddings")
    counts = np.asarray(vocabulary.movie_counts, dtype=np.float64)
    self.log_popularity = tf.Variable(
        np.log(np.maximum(counts, 1) / max(counts.sum(), 1)).astype(
            np.float32),
        trainable=False, name="log_popularity")

  @property
  def model(self) -> model_lib.RecommenderModel:
    return self._keras.value

  def _is_fallback(self, user_ids: tf.Tensor) -> tf.Tensor:
    return tf.equal(self.model.query_tower.lookup(user_ids), 0)

  def _movie_index(self, movie_ids: tf.Tensor) -> tf.Tensor:
    """Catalog row of each movie id, -1 for unknown ones."""
    return self.model.candidate_tower.lookup(movie_ids) - 1

  def _check_k(self, k: tf.Tensor, limit: tf.Tensor, what: str):
    return tf.debugging.assert_equal(
        tf.logical_and(k >= 1, k <= limit), True,
        message=f"k must be between 1 and the number of {what}")

  @tf.function(input_signature=[_string_spec([None], features.USER_ID)])
  def user_embedding(self, user_id):
    """Query embeddings; fallback users get the unknown-id row, flagged."""
    return {
        "embedding": self.model.query_embeddings(user_id),
        "is_fallback": self._is_fallback(user_id),
    }

  @tf.function(input_signature=[
      _string_spec([None], features.USER_ID),
      _string_spec([None, None], features.MOVIE_ID)])
  def score(self, user_id, movie_id):
    """Every score of users [B] against their movies [B, C]."""
    logits = self.model.rerank_logits(user_id, movie_id)
    return {
        "score": self.model.rerank_scores(user_id, movie_id),
        "ncf_logit": logits,
        "liked_prob": tf.sigmoid(logits),
        "is_known_movie": self._movie_index(movie_id) >= 0,
    }

  @tf.function(input_signature=[
      _string_spec([None], features.USER_ID),
      _string_spec([None, None], features.MOVIE_ID), _K_SPEC])
  def rerank(self, user_id, movie_id, k):
    """The top k of each user's candidates in the served order."""
    with tf.control_dependencies(
        [self._check_k(k, tf.shape(movie_id)[1], "candidates")]):
      k = tf.identity(k)
    is_fallback = self._is_fallback(user_id)
    index = self._movie_index(movie_id)
    popularity = tf.gather(self.log_popularity, tf.maximum(index, 0))
    scores = tf.where(is_fallback[:, tf.newaxis], popularity,
                      self.model.rerank_scores(user_id, movie_id))
    scores = tf.where(index >= 0, scores, MASKED_SCORE)
    top = tf.math.top_k(scores, k)
    return {
        "movie_id": tf.gather(movie_id, top.indices, batch_dims=1),
        "score": top.values,
        "is_fallback": is_fallback,
    }

  @tf.function(input_signature=[_string_spec([None], features.USER_ID),
                                _K_SPEC])
  def retrieve(self, user_id, k):
    """Exact top k of the whole catalog by retrieval logit (stock ops)."""
    with tf.control_dependencies(
        [self._check_k(k, self._num_movies, "movies")]):
      k = tf.identity(k)
    is_fallback = self._is_fallback(user_id)
    logits = tf.matmul(self.model.query_embeddings(user_id),
                       self.catalog_embeddings, transpose_b=True)
    top = tf.math.top_k(logits, k)
    popular = tf.broadcast_to(tf.range(k), tf.shape(top.indices))
    indices = tf.where(is_fallback[:, tf.newaxis], popular, top.indices)
    scores = tf.where(is_fallback[:, tf.newaxis],
                      tf.gather(self.log_popularity, popular), top.values)
    return {
        "movie_id": tf.gather(self.catalog, indices),
        "score": scores,
        "is_fallback": is_fallback,
    }

  def signatures(self) -> dict:
    return {
        "user_embedding": self.user_embedding.get_concrete_function(),
        "score": self.score.get_concrete_function(),
        "rerank": self.rerank.get_concrete_function(),
        "retrieve": self.retrieve.get_concrete_function(),
        "serving_default": self.retrieve.get_concrete_function(),
    }


class ScannServingModule(ServingModule):
  """The stock module plus ScaNN inside: needs the scann TF ops to load.

  For in-process serving and custom TF Serving builds that link ScaNN; stock
  TF Serving refuses it ("Op type not registered 'Scann>...'").

  Extra signatures:
    scann_retrieve  user_id [B] -> movie_id [B, C], score [B, C], is_fallback
    recommend       user_id [B], k [] -> movie_id [B, k], score, is_fallback:
                    ScaNN top C, then `rerank`, in one call.
  """

  def __init__(self, model: model_lib.RecommenderModel,
               vocabulary: pipeline.Vocabulary,
               settings: dict) -> None:
    super().__init__(model, vocabulary)
    from scann.scann_ops.py import scann_ops  # pylint: disable=g-import-not-at-top
    builder = scann_ops.builder(self.catalog_embeddings.numpy(),
                                settings["num_neighbors"], "dot_product")
    self.scann = configure_scann(builder, settings).build().serialize_to_module()
    self._num_neighbors = settings["num_neighbors"]

  @tf.function(input_signature=[_string_spec([None], features.USER_ID)])
  def scann_retrieve(self, user_id):
    from scann.scann_ops.py import scann_ops  # pylint: disable=g-import-not-at-top
    searcher = scann_ops.searcher_from_module(self.scann)
    indices, scores = searcher.search_batched(
        self.model.query_embeddings(user_id))
    # Where the searched leaves held fewer than C movies, ScaNN pads with
    # index 0 and a NaN score; padding ids are masked by `rerank`.
    padded = tf.math.is_nan(scores)
    return {
        "movie_id": tf.where(padded, PADDING_ID,
                             tf.gather(self.catalog, indices)),
        "score": tf.where(padded, MASKED_SCORE, scores),
        "is_fallback": self._is_fallback(user_id),
    }

  @tf.function(input_signature=[_string_spec([None], features.USER_ID),
                                _K_SPEC])
  def recommend(self, user_id, k):
    candidates = self.scann_retrieve(user_id)["movie_id"]
    popular = tf.broadcast_to(self.catalog[:self._num_neighbors],
                              tf.shape(candidates))
    candidates = tf.where(self._is_fallback(user_id)[:, tf.newaxis], popular,
                          candidates)
    return self.rerank(user_id, candidates, k)

  def signatures(self) -> dict:
    return dict(super().signatures(),
                scann_retrieve=self.scann_retrieve.get_concrete_function(),
                recommend=self.recommend.get_concrete_function())


def stock_op_names() -> frozenset[str]:
  """Ops every stock TensorFlow (Serving) build has: TensorFlow's own.

  `tf.raw_ops` lists TensorFlow's generated op wrappers and never ops that a
  library such as scann loads into the process, so the check below does not
  depend on what this process imported.
  """
  return frozenset(name for name in dir(tf.raw_ops) if name[0].isupper())


def saved_model_ops(path: str) -> set[str]:
  """Op types used by a SavedModel: its graphs and their function library."""
  from tensorflow.core.protobuf import saved_model_pb2  # pylint: disable=g-import-not-at-top
  saved = saved_model_pb2.SavedModel()
  with tf.io.gfile.GFile(os.path.join(path, "saved_model.pb"), "rb") as f:
    saved.ParseFromString(f.read())
  ops = set()
  for meta_graph in saved.meta_graphs:
    graph = meta_graph.graph_def
    ops.update(node.op for node in graph.node)
    for function in graph.library.function:
      ops.update(node.op for node in function.node_def)
  return ops


def check_stock_ops(path: str,
                    allowed: Optional[Iterable[str]] = None) -> None:
  """Raises `NonStockOpError` naming the ops stock TF Serving lacks."""
  allowed = stock_op_names() if allowed is None else frozenset(allowed)
  foreign = sorted(saved_model_ops(path) - allowed)
  if foreign:
    raise NonStockOpError(
        f"{path} uses ops that stock TensorFlow Serving does not have: "
        f"{', '.join(foreign)}. Stock TF Serving would refuse to load it "
        "(Op type not registered).")


def next_version(export_dir: str, model_name: str) -> int:
  """One above every version of the model's folders, so versions only grow."""
  folders = [model_name + suffix
             for suffix in ("", layout.INDEX_SUFFIX, layout.SCANN_MODEL_SUFFIX)]
  published = [v for folder in folders
               for v in layout.versions(os.path.join(export_dir, folder))]
  return max(published, default=0) + 1


def _remove_abandoned(model_root: str) -> None:
  """Deletes temp folders whose writer process is gone (killed exports)."""
  for name in os.listdir(model_root):
    parts = name.split("-")
    if not (name.startswith(".tmp-") and len(parts) == 3 and
            parts[2].isdigit()):
      continue
    pid = int(parts[2])
    try:
      alive = pid != os.getpid() and (os.kill(pid, 0) is None)
    except ProcessLookupError:
      alive = False
    except PermissionError:
      alive = True
    if not alive:
      shutil.rmtree(os.path.join(model_root, name), ignore_errors=True)


def publish(model_root: str, version: int,
            write: Callable[[str], None]) -> str:
  """Writes a version into a hidden temp folder, then renames it into place.

  Args:
    model_root: The model's folder (export_dir/<model_name>).
    version: The version to publish; must not exist yet.
    write: Writes the version's files into the folder it is given.

  Returns:
    The published version's path.
  """
  final = os.path.join(model_root, str(version))
  if os.path.exists(final):
    raise FileExistsError(f"{final} already exists; versions are immutable.")
  os.makedirs(model_root, exist_ok=True)
  _remove_abandoned(model_root)
  temp = os.path.join(model_root, f".tmp-{version}-{os.getpid()}")
  try:
    write(temp)
    os.rename(temp, final)
  except BaseException:
    shutil.rmtree(temp, ignore_errors=True)
    raise
  return final


def _write_movies(path: str, vocabulary: pipeline.Vocabulary,
                  movies: Optional[pipeline.Movies]) -> None:
  """movies.tsv: catalog row order = ScaNN datapoint order = most rated first."""
  titles, genres = {}, {}
  if movies is not None:
    for movie_id, title, movie_genres in zip(movies.movie_ids, movies.titles,
                                             movies.genres):
      key = movie_id.decode() if isinstance(movie_id, bytes) else str(movie_id)
      titles[key] = str(title)
      genres[key] = "|".join(movie_genres)
  clean = lambda s: s.replace("\t", " ").replace("\n", " ")
  with open(path, "w", encoding="utf-8") as f:
    f.write("movie_id\ttitle\tgenres\tcount\n")
    for movie_id, count in zip(vocabulary.movie_ids, vocabulary.movie_counts):
      key = movie_id.decode() if isinstance(movie_id, bytes) else str(movie_id)
      f.write(f"{clean(key)}\t{clean(titles.get(key, ''))}\t"
              f"{clean(genres.get(key, ''))}\t{int(count)}\n")


def _atomic_write_text(path: str, text: str) -> None:
  temp = os.path.join(os.path.dirname(path),
                      f".tmp-{os.path.basename(path)}-{os.getpid()}")
  with open(temp, "w", encoding="utf-8") as f:
    f.write(text)
  os.replace(temp, path)


def models_config(model_names: Sequence[str],
                  base_dir: str = "/models") -> str:
  """TF Serving's --model_config_file text proto for the stock models.

  Paths are as the server sees them: the tensorflow/serving image mounts the
  export folder at /models.
  """
  entries = "\n".join(
      "  config {\n"
      f"    name: \"{name}\"\n"
      f"    base_path: \"{base_dir}/{name}\"\n"
      "    model_platform: \"tensorflow\"\n"
      "  }" for name in model_names)
  return f"model_config_list {{\n{entries}\n}}\n"


def _example_requests(vocabulary: pipeline.Vocabulary, k: int) -> dict:
  user = vocabulary.user_ids[0].decode()
  popular = [m.decode() for m in vocabulary.movie_ids[:5]]
  return {
      "retrieve": {"signature_name": "retrieve",
                   "inputs": {"user_id": [user, "no-such-user"], "k": k}},
      "user_embedding": {"signature_name": "user_embedding",
                         "inputs": {"user_id": [user]}},
      "score": {"signature_name": "score",
                "inputs": {"user_id": [user], "movie_id": [popular]}},
      "rerank": {"signature_name": "rerank",
                 "inputs": {"user_id": [user],
                            "movie_id": [popular + [PADDING_ID]],
                            "k": min(3, len(popular))}},
  }


def export_model(model: model_lib.RecommenderModel,
                 vocabulary: pipeline.Vocabulary,
                 movies: Optional[pipeline.Movies],
                 export_dir: str,
                 model_name: str = "ncf_tfrs",
                 scann_config: ScannConfig = ScannConfig(),
                 with_scann_model: bool = True) -> str:
  """Exports a trained model as the next version; returns its stock path.

  Writes, under one new version number: the ScaNN index with the movie
  table, the ScaNN-op SavedModel (optional), then the stock SavedModel,
  refused if it has a non-stock op; then models.config and requests/.

  Args:
    model: The trained model.
    vocabulary: The vocabulary it was trained with.
    movies: Titles and genres for movies.tsv; None leaves them empty.
    export_dir: The TF Serving model root.
    model_name: Name of the stock model (the others get suffixes).
    scann_config: ScaNN index settings.
    with_scann_model: Also write the SavedModel with the ScaNN op inside.

  Returns:
    export_dir/<model_name>/<version>.
  """
  if not model_name or not model_name.replace("_", "").replace(
      "-", "").isalnum():
    raise ValueError(f"model_name must be letters, digits, _ or -, got "
                     f"{model_name!r}.")
  os.makedirs(export_dir, exist_ok=True)
  version = next_version(export_dir, model_name)
  module = ServingModule(model, vocabulary)
  embeddings = module.catalog_embeddings.numpy()
  settings = scann_config.resolve(len(embeddings))

  def write_index(path):
    os.makedirs(os.path.join(path, layout.SCANN_DIR))
    build_scann_searcher(embeddings, scann_config).serialize(
        os.path.join(path, layout.SCANN_DIR), relative_path=True)
    _write_movies(os.path.join(path, layout.MOVIES_FILE), vocabulary, movies)
    manifest = {"version": version, "model_name": model_name,
                "embedding_dim": int(embeddings.shape[1]),
                "distance": "dot_product", "scann": settings}
    with open(os.path.join(path, layout.MANIFEST_FILE), "w") as f:
      json.dump(manifest, f, indent=2)

  def write_scann_model(path):
    scann_module = ScannServingModule(model, vocabulary, settings)
    tf.saved_model.save(
        scann_module, path, signatures=scann_module.signatures(),
        options=tf.saved_model.SaveOptions(namespace_whitelist=["Scann"]))

  def write_stock_model(path):
    tf.saved_model.save(module, path, signatures=module.signatures())
    check_stock_ops(path)

  publish(os.path.join(export_dir, model_name + layout.INDEX_SUFFIX), version,
          write_index)
  if with_scann_model:
    publish(os.path.join(export_dir, model_name + layout.SCANN_MODEL_SUFFIX),
            version, write_scann_model)
  path = publish(os.path.join(export_dir, model_name), version,
                 write_stock_model)

  _atomic_write_text(os.path.join(export_dir, layout.MODELS_CONFIG),
                     models_config([model_name]))
  requests_dir = os.path.join(export_dir, layout.REQUESTS_DIR)
  os.makedirs(requests_dir, exist_ok=True)
  for name, body in _example_requests(vocabulary, 10).items():
    _atomic_write_text(os.path.join(requests_dir, f"{name}.json"),
                       json.dumps(body, indent=2) + "\n")
  logging.info("Exported %s version %d to %s", model_name, version, export_dir)
  return path


def latest_checkpoint(model_dir: str) -> str:
  """The newest epoch checkpoint that train.py wrote under model_dir."""
  directory = os.path.join(model_dir, "checkpoints")
  latest = tf.train.latest_checkpoint(directory)
  if latest is None and tf.io.gfile.isdir(directory):
    names = sorted(n[:-len(".index")] for n in tf.io.gfile.listdir(directory)
                   if n.endswith(".index"))
    latest = os.path.join(directory, names[-1]) if names else None
  if latest is None:
    raise FileNotFoundError(f"No checkpoint under {directory}; train first.")
  return latest


def load_trained(model_dir: str) -> tuple[model_lib.RecommenderModel,
                                          pipeline.Vocabulary,
                                          config_lib.ExperimentConfig]:
  """Rebuilds a trained model from a train.py model directory.

  Reads config.json (the architecture), vocabulary/ (the lookups) and the
  latest checkpoint (the weights).
  """
  with tf.io.gfile.GFile(os.path.join(model_dir, "config.json")) as f:
    cfg = config_lib.ExperimentConfig.from_json(f.read())
  vocabulary = pipeline.Vocabulary.load(os.path.join(model_dir, "vocabulary"))
  model = model_lib.RecommenderModel(vocabulary.user_ids, vocabulary.movie_ids,
                                     cfg.model)
  model({features.USER_ID: tf.constant(vocabulary.user_ids[:1]),
         features.MOVIE_ID: tf.constant(vocabulary.movie_ids[:1])})
  model.load_weights(latest_checkpoint(model_dir)).expect_partial()
  return model, vocabulary, cfg


def _define_flags() -> dict[str, flags.FlagHolder]:
  """The command's flags, defined only when it runs as a program.

  train.py imports this module for `export_model` and has flags of the
  same names (--model_dir, --num_candidates); absl allows one of each.
  """
  return {
      "model_dir": flags.DEFINE_string("model_dir", "runs/demo",
                                       "A train.py model directory."),
      "export_dir": flags.DEFINE_string(
          "export_dir", "export", "TF Serving model root to export into."),
      "model_name": flags.DEFINE_string("model_name", "ncf_tfrs",
                                        "Model name in TF Serving."),
      "num_candidates": flags.DEFINE_integer(
          "num_candidates", ScannConfig.num_neighbors,
          "Candidates ScaNN returns per user (reranked by NCF).",
          lower_bound=1),
      "num_leaves": flags.DEFINE_integer(
          "scann_num_leaves", None,
          "ScaNN tree leaves (default ~sqrt(movies)).", lower_bound=2),
      "leaves_fraction": flags.DEFINE_float(
          "scann_leaves_to_search_fraction",
          ScannConfig.leaves_to_search_fraction,
          "Share of ScaNN leaves searched per query.", lower_bound=0.0,
          upper_bound=1.0),
      "reorder": flags.DEFINE_integer(
          "scann_reordering_num_neighbors", None,
          "AH candidates rescored exactly (default 4 x num_candidates).",
          lower_bound=1),
      "scann_model": flags.DEFINE_bool(
          "scann_model", True,
          f"Also export the SavedModel with ScaNN inside (<model_name>"
          f"{layout.SCANN_MODEL_SUFFIX}; not loadable by stock TF Serving)."),
  }


def main(argv, flag: dict[str, flags.FlagHolder]):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  model, vocabulary, cfg = load_trained(flag["model_dir"].value)
  try:
    movies = pipeline.load_movies(cfg.data.dataset, cfg.data.data_dir)
  except Exception as e:  # pylint: disable=broad-except
    logging.warning("No titles for %s (%s); movies.tsv has ids only.",
                    cfg.data.dataset, e)
    movies = None
  scann_config = ScannConfig(
      num_neighbors=flag["num_candidates"].value,
      num_leaves=flag["num_leaves"].value,
      leaves_to_search_fraction=flag["leaves_fraction"].value,
      reordering_num_neighbors=flag["reorder"].value)
  path = export_model(model, vocabulary, movies, flag["export_dir"].value,
                      flag["model_name"].value, scann_config,
                      flag["scann_model"].value)
  print(path)


if __name__ == "__main__":
  _FLAGS = _define_flags()
  app.run(lambda argv: main(argv, _FLAGS))
