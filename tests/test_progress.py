"""What training prints while it runs: `callbacks.ProgressLog`."""

import io

import ncf_tfrs  # noqa: F401  (must precede TensorFlow: selects tf-keras)

import numpy as np
import tensorflow as tf

from ncf_tfrs.training import callbacks


def _fit(log, epochs=2):
  tf.keras.utils.set_random_seed(0)
  model = tf.keras.Sequential([tf.keras.layers.Dense(1)])
  model.compile(optimizer="sgd", loss="mse", steps_per_execution=2)
  x = np.random.default_rng(0).normal(size=(64, 3)).astype(np.float32)
  return model.fit(x, x[:, :1], batch_size=8, epochs=epochs, verbose=0,
                   callbacks=[log]).history


def test_one_line_per_epoch_with_its_metrics():
  out = io.StringIO()
  history = _fit(callbacks.ProgressLog(2, 8, live=False, stream=out))
  lines = out.getvalue().splitlines()
  assert len(lines) == 2
  assert "\r" not in out.getvalue()
  for epoch, line in enumerate(lines):
    assert line.startswith(f"Epoch {epoch + 1}/2 - ")
    assert f"loss: {history['loss'][epoch]:.4f}" in line


def test_live_line_shows_step_and_loss_then_the_epoch_line():
  out = io.StringIO()
  _fit(callbacks.ProgressLog(1, 8, live=True, interval=0.0, stream=out),
       epochs=1)
  text = out.getvalue()
  assert "\rEpoch 1/1: step 2/8 - " in text
  assert "\rEpoch 1/1: step 8/8 - " in text
  final = text.split("\r")[-1]
  assert final.startswith("Epoch 1/1 - ") and final.endswith("\n")
  assert text.count("\n") == 1


def _scalar_tags(log_dir):
  tags = set()
  for path in tf.io.gfile.glob(f"{log_dir}/train/events.out.tfevents.*"):
    for record in tf.data.TFRecordDataset(path):
      event = tf.compat.v1.Event.FromString(record.numpy())
      tags.update(value.tag for value in event.summary.value)
  return tags


def test_tensorboard_writes_what_keras_s_callback_writes(tmp_path):
  for update_freq in ("epoch", 1):
    ours = tmp_path / f"ours-{update_freq}"
    keras = tmp_path / f"keras-{update_freq}"
    _fit(callbacks.TensorBoard(str(ours), update_freq=update_freq))
    _fit(tf.keras.callbacks.TensorBoard(str(keras), update_freq=update_freq))
    assert "epoch_loss" in _scalar_tags(ours)
    assert _scalar_tags(ours) == _scalar_tags(keras)
