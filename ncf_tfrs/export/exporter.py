"""One export: the next version of every artifact, published atomically.

Under one new version number: the ScaNN index with the movie table, the
ScaNN-op SavedModel (optional), then the stock SavedModel, refused if it has
a non-stock op; then models.config and example requests.
"""

from __future__ import annotations

import json
import os
from typing import Optional, Sequence

from absl import logging
import tensorflow as tf

from ncf_tfrs import data as data_lib
from ncf_tfrs import model as model_lib
from ncf_tfrs.export import publish
from ncf_tfrs.export import scann_index
from ncf_tfrs.export import signatures
from ncf_tfrs.export import stock_ops
from ncf_tfrs.serving import contract
from ncf_tfrs.serving.contract import Input
from ncf_tfrs.serving.contract import Signature


def _write_movies(path: str, vocabulary: data_lib.Vocabulary,
                  movies: Optional[data_lib.Movies]) -> None:
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


def _example_requests(vocabulary: data_lib.Vocabulary, k: int,
                      history_side: bool) -> dict:
  """TF Serving REST bodies, one per stock signature, on real ids."""
  user = vocabulary.user_ids[0].decode()
  popular = [m.decode() for m in vocabulary.movie_ids[:5]]
  inputs = {
      Signature.RETRIEVE: {Input.USER_ID: [user, "no-such-user"], Input.K: k},
      Signature.USER_EMBEDDING: {Input.USER_ID: [user]},
      Signature.SCORE: {Input.USER_ID: [user], Input.MOVIE_ID: [popular]},
      Signature.RERANK: {Input.USER_ID: [user],
                         Input.MOVIE_ID: [popular + [contract.PADDING_ID]],
                         Input.K: min(3, len(popular))},
      # Leaves out the most rated movie as if rated since training, and
      # keeps the training history in.
      Signature.RETRIEVE_FILTERED: {
          Input.USER_ID: [user, "no-such-user"], Input.K: k,
          Input.SEEN: [popular[:1], popular[:1]], Input.INCLUDE_SEEN: True},
  }
  if history_side:
    # A user the model never saw, served from three ratings (one padded
    # out in the second row), beside a known user, who keeps its own.
    inputs[Signature.RETRIEVE_HISTORY] = {
        Input.USER_ID: ["new-user", user], Input.K: k,
        Input.HISTORY_MOVIE_ID: [popular[:3], popular[:2] + [
            contract.PADDING_ID]],
        Input.HISTORY_RATING: [[5.0, 4.5, 1.0], [4.0, 3.5, 0.0]]}
  return {name: {"signature_name": name, "inputs": body}
          for name, body in inputs.items()}


def export_model(model: model_lib.RecommenderModel,
                 vocabulary: data_lib.Vocabulary,
                 movies: Optional[data_lib.Movies],
                 export_dir: str,
                 model_name: str = "ncf_tfrs",
                 scann_config: scann_index.ScannConfig = scann_index.ScannConfig(),
                 with_scann_model: bool = True,
                 history: Optional[data_lib.RatedHistory] = None) -> str:
  """Exports a trained model as the next version; returns its stock path.

  Writes, under one new version number: the ScaNN index with the movie
  table and the rated history, the ScaNN-op SavedModel (optional), then the
  stock SavedModel, refused if it has a non-stock op; then models.config and
  requests/. Both SavedModels carry the history too, so that `retrieve` and
  `rerank` leave each user's rated movies out in the graph.

  Args:
    model: The trained model.
    vocabulary: The vocabulary it was trained with.
    movies: Titles and genres for movies.tsv; None leaves them empty.
    export_dir: The TF Serving model root.
    model_name: Name of the stock model (the others get suffixes).
    scann_config: ScaNN index settings.
    with_scann_model: Also write the SavedModel with the ScaNN op inside.
    history: Each training user's rated movies, left out of their lists;
      None serves every movie (re-export with one to refresh it).

  Returns:
    export_dir/<model_name>/<version>.
  """
  if not model_name or not model_name.replace("_", "").replace(
      "-", "").isalnum():
    raise ValueError(f"model_name must be letters, digits, _ or -, got "
                     f"{model_name!r}.")
  os.makedirs(export_dir, exist_ok=True)
  version = publish.next_version(export_dir, model_name)
  module = signatures.ServingModule(model, vocabulary, history)
  embeddings = module.catalog_embeddings.numpy()
  settings = scann_config.resolve(len(embeddings))

  def write_index(path):
    os.makedirs(os.path.join(path, contract.SCANN_DIR))
    scann_index.build_scann_searcher(embeddings, scann_config).serialize(
        os.path.join(path, contract.SCANN_DIR), relative_path=True)
    _write_movies(os.path.join(path, contract.MOVIES_FILE), vocabulary, movies)
    if history is not None:
      history.save(os.path.join(path, contract.RATED_FILE))
    manifest = {"version": version, "model_name": model_name,
                "embedding_dim": int(embeddings.shape[1]),
                "distance": "dot_product", "scann": settings,
                # The *_history signatures: users served from their ratings.
                "history_side": bool(model.config.history_share)}
    with open(os.path.join(path, contract.MANIFEST_FILE), "w") as f:
      json.dump(manifest, f, indent=2)

  def write_scann_model(path):
    scann_module = signatures.ScannServingModule(model, vocabulary, settings,
                                                 history)
    tf.saved_model.save(
        scann_module, path, signatures=scann_module.signatures(),
        options=tf.saved_model.SaveOptions(namespace_whitelist=["Scann"]))

  def write_stock_model(path):
    tf.saved_model.save(module, path, signatures=module.signatures())
    stock_ops.check_stock_ops(path)

  publish.publish_version(
      os.path.join(export_dir, model_name + contract.INDEX_SUFFIX), version,
      write_index)
  if with_scann_model:
    publish.publish_version(
        os.path.join(export_dir, model_name + contract.SCANN_MODEL_SUFFIX),
        version, write_scann_model)
  path = publish.publish_version(os.path.join(export_dir, model_name),
                                 version, write_stock_model)

  publish.atomic_write_text(os.path.join(export_dir, contract.MODELS_CONFIG),
                     models_config([model_name]))
  requests_dir = os.path.join(export_dir, contract.REQUESTS_DIR)
  os.makedirs(requests_dir, exist_ok=True)
  for name, body in _example_requests(
      vocabulary, 10, bool(model.config.history_share)).items():
    publish.atomic_write_text(os.path.join(requests_dir, f"{name}.json"),
                       json.dumps(body, indent=2) + "\n")
  logging.info("Exported %s version %d to %s", model_name, version, export_dir)
  return path
