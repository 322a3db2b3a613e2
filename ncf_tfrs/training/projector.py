"""Movie embeddings for the TensorBoard projector.

Training ends with a movie tower whose embeddings are easiest to judge by
eye: do films of one genre cluster, do sequels sit together? The TensorBoard
projector shows exactly that, given three files in a TensorBoard log dir:

- a TF2 object-based checkpoint holding the embedding matrix as one variable;
- `metadata.tsv`, one row per embedding row (movie id, title, genres, and
  optionally the number of training ratings), so points can be labelled,
  searched and coloured;
- `projector_config.pbtxt`, which names the checkpoint tensor and the
  metadata file.

The training loop calls `write_movie_projector` at the end of training with
the candidate embeddings of the whole movie vocabulary; `tensorboard --logdir
<model_dir>/logs` then shows them under "Projector".
"""

from __future__ import annotations

import os
import re
from typing import Optional, Sequence, Union

import numpy as np
import tensorflow as tf
from tensorboard.plugins import projector

from ncf_tfrs import data as data_lib

METADATA_FILENAME = "metadata.tsv"
_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")
_UNSAFE = re.compile(r"[\t\r\n]+")

Text = Union[str, bytes]


def _text(value: Text) -> str:
  """One TSV field: decoded, with tabs and line breaks made spaces."""
  if isinstance(value, bytes):
    value = value.decode("utf-8", errors="replace")
  return _UNSAFE.sub(" ", str(value)).strip()


def _genres(value: Union[Text, Sequence[Text]]) -> str:
  if isinstance(value, (str, bytes)):
    return _text(value)
  return "|".join(_text(g) for g in value)


def tensor_name(name: str) -> str:
  """The checkpoint key under which `write_projector` stores `name`."""
  return f"{name}/.ATTRIBUTES/VARIABLE_VALUE"


def write_projector(log_dir: str,
                    movie_ids: Sequence[Text],
                    embeddings: np.ndarray,
                    titles: Optional[Sequence[Text]] = None,
                    genres: Optional[Sequence[Union[Text,
                                                    Sequence[Text]]]] = None,
                    name: str = "movie_embeddings",
                    counts: Optional[Sequence[int]] = None) -> str:
  """Writes `embeddings` and their labels for the TensorBoard projector.

  The metadata always has the columns movie_id, title and genres (left empty
  when `titles` or `genres` is not given) plus count when `counts` is, under
  a header row: TensorBoard reads a header only when there are two columns or
  more, so a fixed set keeps every file the same shape. Tabs and line breaks
  in titles and genres become spaces, since they would split a TSV row.

  The checkpoint is written with a `tf.train.CheckpointManager` keeping one
  version, so its `checkpoint` state file names it relative to `log_dir`: the
  projector finds it as the latest checkpoint there, and the folder can be
  moved or copied. Use a folder that holds no training checkpoints (the
  TensorBoard log dir, not the model dir); one embedding matrix per folder.

  Args:
    log_dir: TensorBoard log dir to write into (created if missing).
    movie_ids: Raw movie ids (str or bytes), one per embedding row.
    embeddings: [num_movies, dim] float array.
    titles: Optional titles, one per row.
    genres: Optional genres per row: a sequence of genre names (joined with
      "|", as in MovieLens) or one already-joined string.
    name: The variable's name in the checkpoint and the projector.
    counts: Optional number of training ratings per movie (for colouring).

  Returns:
    The path of the projector config file.

  Raises:
    ValueError: shapes or lengths disagree, `name` is not an identifier, or
      `log_dir` holds other checkpoints (which the manager could delete).
  """
  embeddings = np.asarray(embeddings, dtype=np.float32)
  if embeddings.ndim != 2 or not embeddings.shape[0]:
    raise ValueError("embeddings must be a non-empty [num_movies, dim] "
                     f"matrix, got shape {embeddings.shape}")
  rows = embeddings.shape[0]
  columns = {"movie_id": movie_ids, "title": titles, "genres": genres,
             "count": counts}
  for column, values in columns.items():
    if values is not None and len(values) != rows:
      raise ValueError(f"{len(values)} {column} values for {rows} embeddings")
  if not _NAME.match(name):
    raise ValueError(f"name must be an identifier, got {name!r}")

  state = tf.train.get_checkpoint_state(log_dir)
  if state and not os.path.basename(
      state.model_checkpoint_path).startswith(f"{name}-"):
    raise ValueError(
        f"{log_dir} holds other checkpoints ({state.model_checkpoint_path}); "
        "write the projector files to a folder of their own, such as the "
        "TensorBoard log dir")

  os.makedirs(log_dir, exist_ok=True)
  header = ["movie_id", "title", "genres"] + (["count"] if counts is not None
                                              else [])
  with open(os.path.join(log_dir, METADATA_FILENAME), "w",
            encoding="utf-8") as f:
    f.write("\t".join(header) + "\n")
    for i in range(rows):
      row = [_text(movie_ids[i]),
             _text(titles[i]) if titles is not None else "",
             _genres(genres[i]) if genres is not None else ""]
      if counts is not None:
        row.append(str(int(counts[i])))
      f.write("\t".join(row) + "\n")

  variable = tf.Variable(embeddings, trainable=False, name=name)
  checkpoint = tf.train.Checkpoint(**{name: variable})
  tf.train.CheckpointManager(checkpoint, log_dir, max_to_keep=1,
                             checkpoint_name=name).save()

  config = projector.ProjectorConfig()
  embedding = config.embeddings.add()
  embedding.tensor_name = tensor_name(name)
  embedding.metadata_path = METADATA_FILENAME
  projector.visualize_embeddings(log_dir, config)
  return os.path.join(log_dir, "projector_config.pbtxt")


def write_movie_projector(log_dir: str, model, vocabulary: data_lib.Vocabulary,
                          movies: data_lib.Movies) -> None:
  """The trained movie embeddings of `model`, titled, for the projector."""
  catalog = vocabulary.movie_ids.astype(bytes)
  row = {m: i for i, m in enumerate(movies.movie_ids.astype(bytes))}
  rows = [row.get(m) for m in catalog]
  write_projector(
      log_dir, catalog,
      model.candidate_embeddings(tf.constant(catalog)).numpy(),
      titles=["" if i is None else movies.titles[i] for i in rows],
      genres=[[] if i is None else movies.genres[i] for i in rows],
      counts=vocabulary.movie_counts)
