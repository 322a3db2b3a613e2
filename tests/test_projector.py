"""The TensorBoard projector files: what TensorBoard reads, row for row."""

import os

from google.protobuf import text_format
import numpy as np
import pytest

import ncf_tfrs  # pylint: disable=unused-import  (Keras 2 before TensorFlow)
from ncf_tfrs.training import projector
import tensorflow as tf
from tensorboard.plugins.projector import projector_config_pb2


def _read_config(log_dir):
  config = projector_config_pb2.ProjectorConfig()
  with open(os.path.join(log_dir, "projector_config.pbtxt")) as f:
    text_format.Parse(f.read(), config)
  return config


def test_writes_checkpoint_metadata_and_config(tmp_path):
  log_dir = str(tmp_path / "logs")
  embeddings = np.arange(15, dtype=np.float32).reshape(5, 3)
  path = projector.write_projector(
      log_dir, [b"1", b"2", "3", "4", "5"], embeddings,
      titles=["Toy Story (1995)", "Tab\there", "Two\nlines\r\n", "", "Heat"],
      genres=[["Animation", "Comedy"], [], "Drama|War", ["Crime"], ["Action"]],
      counts=[10, 0, 3, 1, 2])

  assert path == os.path.join(log_dir, "projector_config.pbtxt")
  with open(os.path.join(log_dir, "metadata.tsv"), encoding="utf-8") as f:
    lines = f.read().splitlines()
  assert len(lines) == embeddings.shape[0] + 1
  rows = [line.split("\t") for line in lines]
  assert rows[0] == ["movie_id", "title", "genres", "count"]
  assert all(len(row) == 4 for row in rows)
  assert rows[1] == ["1", "Toy Story (1995)", "Animation|Comedy", "10"]
  assert rows[2][1] == "Tab here"
  assert rows[3][1:3] == ["Two lines", "Drama|War"]

  [embedding] = _read_config(log_dir).embeddings
  assert embedding.metadata_path == "metadata.tsv"
  assert embedding.tensor_name == "movie_embeddings/.ATTRIBUTES/VARIABLE_VALUE"
  # The projector finds the checkpoint as the log dir's latest, by a path
  # relative to it: the folder can move.
  checkpoint = tf.train.latest_checkpoint(log_dir)
  assert checkpoint is not None
  reader = tf.train.load_checkpoint(checkpoint)
  assert reader.get_variable_to_shape_map()[embedding.tensor_name] == [5, 3]
  np.testing.assert_array_equal(reader.get_tensor(embedding.tensor_name),
                                embeddings)


def test_ids_only_still_has_header_and_can_be_rewritten(tmp_path):
  log_dir = str(tmp_path)
  projector.write_projector(log_dir, ["7", "8"], np.ones((2, 4)), name="emb")
  projector.write_projector(log_dir, ["7", "8", "9"], np.ones((3, 4)),
                            name="emb")
  with open(os.path.join(log_dir, "metadata.tsv")) as f:
    assert f.read().splitlines() == ["movie_id\ttitle\tgenres", "7\t\t",
                                     "8\t\t", "9\t\t"]
  reader = tf.train.load_checkpoint(tf.train.latest_checkpoint(log_dir))
  assert reader.get_variable_to_shape_map()[
      projector.tensor_name("emb")] == [3, 4]


def test_rejects_mismatched_lengths_and_bad_names(tmp_path):
  with pytest.raises(ValueError, match="2 title values for 3 embeddings"):
    projector.write_projector(str(tmp_path), ["1", "2", "3"], np.ones((3, 2)),
                              titles=["a", "b"])
  with pytest.raises(ValueError, match="matrix"):
    projector.write_projector(str(tmp_path), ["1"], np.ones(3))
  with pytest.raises(ValueError, match="identifier"):
    projector.write_projector(str(tmp_path), ["1"], np.ones((1, 2)),
                              name="a/b")


def test_refuses_a_folder_with_training_checkpoints(tmp_path):
  model_dir = str(tmp_path)
  tf.train.CheckpointManager(tf.train.Checkpoint(v=tf.Variable(1.0)),
                             model_dir, max_to_keep=3).save()
  with pytest.raises(ValueError, match="holds other checkpoints"):
    projector.write_projector(model_dir, ["1"], np.ones((1, 2)))
  assert tf.train.latest_checkpoint(model_dir).endswith("ckpt-1")
