"""What a model directory holds, and how a trained model comes back from it.

A run's model directory holds config.json (the architecture), vocabulary/
(the id tables), backup/ (what a killed run resumes from), checkpoints/ (the
epochs validation may keep, or every epoch without validation, and `kept`:
each task's weights from its best validation epoch) and validation.json.
`load_trained` rebuilds the trained model from them, for the export command
and for the chief of a distributed run.

An epoch validation may keep is the backup taken at its end, kept under
checkpoints/ (`keep_backup`): the epoch's state is written once. Such a
checkpoint holds the model under `model/`, as `BackupAndRestore` writes it;
`read_weights` reads either kind.
"""

from __future__ import annotations

import os

import tensorflow as tf

from ncf_tfrs import data as data_lib
from ncf_tfrs import features
from ncf_tfrs import model as model_lib
from ncf_tfrs.training import config as config_lib

CONFIG_FILE = "config.json"
METRICS_FILE = "metrics.json"
VOCABULARY_DIR = "vocabulary"
# Each training user's rated movies (`data.RatedHistory`), for the export.
RATED_FILE = "rated.npz"
BACKUP_DIR = "backup"
CHECKPOINT_DIR = "checkpoints"
KEPT_CHECKPOINT = "kept"
LOG_DIR = "logs"


def restore_vocabulary(model_dir: str, train: data_lib.Ratings,
               write: bool = True) -> data_lib.Vocabulary:
  """The run's vocabularies: built from train, or reloaded when resuming.

  Only the chief `write`s (and checks); other workers build the same
  vocabulary from the same split.
  """
  directory = os.path.join(model_dir, VOCABULARY_DIR)
  built = data_lib.Vocabulary.from_ratings(train)
  if not write:
    return built
  if tf.io.gfile.exists(os.path.join(directory, "movie_ids.txt")):
    saved = data_lib.Vocabulary.load(directory)
    if not (list(saved.movie_ids) == list(built.movie_ids) and
            list(saved.user_ids) == list(built.user_ids)):
      raise ValueError(
          f"{model_dir} holds a run on other data (its vocabulary differs "
          "from this split's). Use another --model_dir.")
  else:
    built.save(directory)
  return built


def save_history(model_dir: str, history: data_lib.RatedHistory) -> None:
  history.save(os.path.join(model_dir, VOCABULARY_DIR, RATED_FILE))


def load_history(model_dir: str) -> data_lib.RatedHistory | None:
  """The rated history training saved; None for runs from before it did."""
  path = os.path.join(model_dir, VOCABULARY_DIR, RATED_FILE)
  return data_lib.RatedHistory.load(path) if os.path.exists(path) else None


def empty_model(vocabulary: data_lib.Vocabulary,
                config: model_lib.ModelConfig) -> model_lib.RecommenderModel:
  """A built model of a run's architecture, to read a checkpoint into."""
  model = model_lib.RecommenderModel(vocabulary.user_ids, vocabulary.movie_ids,
                                     config)
  model({features.USER_ID: tf.constant(vocabulary.user_ids[:1]),
         features.MOVIE_ID: tf.constant(vocabulary.movie_ids[:1])})
  return model


def keep_backup(backup: str, target: str) -> None:
  """Keeps the checkpoint `backup` (a path prefix) as `target` as well.

  Backups are deleted when the next one is written; the kept files stay. On
  a local file system they are hard links, which cost nothing; elsewhere
  (gs://, or where links fail) copies.
  """
  tf.io.gfile.makedirs(os.path.dirname(target))
  for source in tf.io.gfile.glob(backup + ".*"):
    copy = target + source[len(backup):]
    if tf.io.gfile.exists(copy):
      tf.io.gfile.remove(copy)  # A resumed run keeps its epoch again.
    if "://" not in source:
      try:
        os.link(source, copy)
        continue
      except OSError:  # No hard links here (another device, some mounts).
        pass
    tf.io.gfile.copy(source, copy)


_BACKUP_ROOT = "model"  # Where `BackupAndRestore` checkpoints the model.


def read_weights(model: model_lib.RecommenderModel, path: str) -> None:
  """Reads `model`'s weights from `path`: a `save_weights` checkpoint or a
  kept backup (`keep_backup`)."""
  roots = {name.split("/")[0] for name, _ in tf.train.list_variables(path)}
  if _BACKUP_ROOT in roots:
    tf.train.Checkpoint(**{_BACKUP_ROOT: model}).read(path).expect_partial()
  else:
    model.load_weights(path).expect_partial()


def latest_checkpoint(model_dir: str) -> str:
  """The weights training kept (or, before it finished, its newest epoch)."""
  directory = os.path.join(model_dir, CHECKPOINT_DIR)
  latest = tf.train.latest_checkpoint(directory)
  if latest is None and tf.io.gfile.isdir(directory):
    names = sorted(n[:-len(".index")] for n in tf.io.gfile.listdir(directory)
                   if n.endswith(".index"))
    latest = os.path.join(directory, names[-1]) if names else None
  if latest is None:
    raise FileNotFoundError(f"No checkpoint under {directory}; train first.")
  return latest


def load_trained(model_dir: str) -> tuple[model_lib.RecommenderModel,
                                          data_lib.Vocabulary,
                                          config_lib.ExperimentConfig]:
  """Rebuilds a trained model from a model directory.

  Reads config.json (the architecture), vocabulary/ (the lookups) and the
  latest checkpoint (the weights).
  """
  with tf.io.gfile.GFile(os.path.join(model_dir, CONFIG_FILE)) as f:
    cfg = config_lib.ExperimentConfig.from_json(f.read())
  vocabulary = data_lib.Vocabulary.load(
      os.path.join(model_dir, VOCABULARY_DIR))
  model = empty_model(vocabulary, cfg.model)
  read_weights(model, latest_checkpoint(model_dir))
  return model, vocabulary, cfg
