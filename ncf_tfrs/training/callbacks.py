"""Keras callbacks of the training loop: step counts, timing, curves, NaN stop,
progress."""

from __future__ import annotations

import math
import sys
import time
from typing import Sequence, TextIO

import tensorflow as tf

from ncf_tfrs import cli
from ncf_tfrs.model import OptimizerConfig


class NaNLossError(cli.CommandError, RuntimeError):
  """Training diverged."""


def is_last_epoch(callback: tf.keras.callbacks.Callback, epoch: int) -> bool:
  """Whether `epoch` (0-based), at its end, is the last that `callback`'s
  `fit` runs: the last of its budget, or one after which a callback asked
  training to stop. What the epoch-end writes skip when training ends there
  (`resume.RunBackup`, `validation.LastEpochCheckpoint`)."""
  return callback.model.stop_training or epoch + 1 >= callback.params["epochs"]


class StopOnNaN(tf.keras.callbacks.Callback):
  """Stops training with a message that says what to change."""

  def __init__(self, optimizer: OptimizerConfig):
    super().__init__()
    self._optimizer = optimizer
    self._epoch = 0

  def on_epoch_begin(self, epoch, logs=None):
    self._epoch = epoch

  def on_train_batch_end(self, batch, logs=None):
    loss = (logs or {}).get("loss")
    if loss is not None and not math.isfinite(float(loss)):
      raise NaNLossError(
          f"The training loss became {float(loss)} at epoch {self._epoch + 1}, "
          f"by step {batch + 1}. Lower the learning rates (now "
          f"--embedding_learning_rate={self._optimizer.embedding_learning_rate}"
          f", --dense_learning_rate={self._optimizer.dense_learning_rate}). "
          "The last backup in the model directory is from before the "
          "divergence.")


class TensorBoard(tf.keras.callbacks.TensorBoard):
  """Keras's TensorBoard callback, without per-batch work it then discards.

  With `update_freq="epoch"` (what the loop writes), Keras's callback still
  calls `tf.summary.scalar` for every metric after every execution, each
  call discarded by its recording condition: time taken from training for
  nothing. Those calls are skipped; the graph and the epoch scalars are
  written as before.
  """

  def on_train_batch_end(self, batch, logs=None):
    super().on_train_batch_end(
        batch, None if self.update_freq == "epoch" else logs)


class StepCounter(tf.keras.callbacks.Callback):
  """Counts the run's training steps, from `start` (a resumed run's backup).

  With `steps_per_execution`, Keras calls the batch hooks once per execution
  with the first and last step index, so steps are counted from the indices
  rather than from the calls.
  """

  def __init__(self, start: int = 0):
    super().__init__()
    # It reads no logs, so Keras may skip converting them, and runs it under
    # ParameterServerStrategy too, which refuses other batch-level callbacks.
    self._supports_tf_logs = True
    self.steps = start
    self._first = 0

  def on_train_batch_begin(self, batch, logs=None):
    self._first = int(batch)

  def on_train_batch_end(self, batch, logs=None):
    self.steps += int(batch) - self._first + 1


class EpochTimer(tf.keras.callbacks.Callback):
  """Wall-clock seconds of each epoch and of its boundary, and its last loss.

  An epoch's seconds run from its start to its end, Keras's evaluation of
  the validation data included: later epochs exclude start-up and tracing,
  so throughput comparisons (one device vs a distribution strategy) read
  them instead of the run's total. Placed first among the callbacks, it
  leaves out the time the others spend at epoch ends. Its boundary runs from
  its last training step to the next epoch's start (or the end of
  training): validation, epoch checkpoints, backups, logs: the time between
  epochs in which nothing trains. A resumed run starts from the epochs
  finished before its backup.
  """

  def __init__(self, seconds: Sequence[float] = (),
               losses: Sequence[float] = (),
               boundary_seconds: Sequence[float] = ()):
    super().__init__()
    self._supports_tf_logs = True  # Reads no batch logs.
    self.seconds: list[float] = list(seconds)
    self.losses: list[float] = list(losses)
    self.boundary_seconds: list[float] = list(boundary_seconds)
    self._last_step_end = None

  def on_epoch_begin(self, epoch, logs=None):
    self._end_boundary()
    self._start = time.perf_counter()
    # A resumed epoch replaces what was kept of it.
    del self.seconds[epoch:], self.losses[epoch:]
    del self.boundary_seconds[epoch:]

  def on_train_batch_end(self, batch, logs=None):
    self._last_step_end = time.perf_counter()

  def on_epoch_end(self, epoch, logs=None):
    self.seconds.append(time.perf_counter() - self._start)
    if logs and "loss" in logs:
      self.losses.append(float(logs["loss"]))

  def on_train_end(self, logs=None):
    self._end_boundary()

  def boundaries_so_far(self) -> list[float]:
    """The boundaries of the epochs ended, the one in progress up to now."""
    if self._last_step_end is None:
      return list(self.boundary_seconds)
    return self.boundary_seconds + [time.perf_counter() - self._last_step_end]

  def _end_boundary(self):
    self.boundary_seconds = self.boundaries_so_far()
    self._last_step_end = None


class HeldOutCurve(StepCounter):
  """Evaluates held-out ratings during training: the learning curve.

  Each time training passes a multiple of `every_steps` steps, and once more
  when training ends, runs `model.evaluate` on `dataset` (a fixed held-out
  sample, see `held_out_sample`) and records the metrics against the training
  wall-clock seconds so far, which exclude the time spent evaluating.
  Benchmarks plot these points to compare how fast recipes learn, not just
  where they end.
  """

  def __init__(self, dataset: tf.data.Dataset, every_steps: int,
               ratings_per_step: int, start: int = 0,
               points: Sequence[dict[str, float]] = (),
               seconds: float = 0.0):
    super().__init__(start)
    if every_steps <= 0:
      raise ValueError(f"every_steps must be positive, got {every_steps}.")
    self._dataset = dataset
    self._every = every_steps
    self._ratings_per_step = ratings_per_step
    self.points: list[dict[str, float]] = list(points)
    self._start_seconds = seconds

  def on_train_begin(self, logs=None):
    self._seconds = self._start_seconds
    self._since = time.perf_counter()

  def on_train_batch_end(self, batch, logs=None):
    before = self.steps
    super().on_train_batch_end(batch, logs)
    if self.steps // self._every > before // self._every:
      self._record()

  def on_train_end(self, logs=None):
    if not self.points or self.points[-1]["step"] != self.steps:
      self._record()

  def _record(self):
    now = time.perf_counter()
    self._seconds += now - self._since
    metrics = self.model.evaluate(self._dataset, return_dict=True, verbose=0)
    self._since = time.perf_counter()
    self.points.append({
        "step": self.steps,
        "ratings": self.steps * self._ratings_per_step,
        "train_seconds": self._seconds,
        "evaluation_seconds": self._since - now,
        **{k: float(v) for k, v in metrics.items()},
    })


class ProgressLog(tf.keras.callbacks.Callback):
  """What training prints: one line per epoch, and on a terminal a live one.

  It stands in for Keras's own progress output (`fit(verbose=1 or 2)`),
  which slowed every training step of this model by about a third on CPU,
  even at `verbose=2` (docs/results/training_speed.md). It reads the
  step logs at most once per `interval` seconds, and only for the live line.
  """

  def __init__(self, epochs: int, steps_per_epoch: int, live: bool,
               interval: float = 1.0, stream: TextIO | None = None):
    """Initializes the log.

    Args:
      epochs: The run's epochs.
      steps_per_epoch: Training steps of an epoch.
      live: Rewrite one line with the step and loss while an epoch runs
        (for a terminal); otherwise print only each epoch's line.
      interval: Seconds between rewrites of the live line.
      stream: Where to print (default stdout).
    """
    super().__init__()
    self._supports_tf_logs = True  # Logs stay tensors unless printed.
    self._epochs = epochs
    self._steps = steps_per_epoch
    self._live = live
    self._interval = interval
    self._stream = stream
    self._width = 0

  def _write(self, text: str) -> None:
    stream = self._stream or sys.stdout
    stream.write(text)
    stream.flush()

  def on_epoch_begin(self, epoch, logs=None):
    self._epoch = epoch
    self._start = self._shown = time.perf_counter()

  def on_train_batch_end(self, batch, logs=None):
    now = time.perf_counter()
    if not self._live or now - self._shown < self._interval:
      return
    self._shown = now
    loss = float((logs or {}).get("loss", math.nan))
    line = (f"Epoch {self._epoch + 1}/{self._epochs}: step {batch + 1}/"
            f"{self._steps} - {now - self._start:.0f}s - loss: {loss:.4f}")
    self._write("\r" + line.ljust(self._width))
    self._width = len(line)

  def on_epoch_end(self, epoch, logs=None):
    metrics = " - ".join(f"{name}: {float(value):.4f}"
                         for name, value in (logs or {}).items())
    line = (f"Epoch {epoch + 1}/{self._epochs} - "
            f"{time.perf_counter() - self._start:.0f}s - {metrics}")
    self._write(("\r" if self._live else "") + line.ljust(self._width) + "\n")
    self._width = 0
