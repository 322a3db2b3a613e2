"""The training loop: config -> data -> model.fit -> held-out metrics.

`run` is what the train command calls between reading its flags and
exporting: it prepares and splits the data (train / validation / test),
builds the vocabularies and the model under the configured distribution
strategy, fits with backups a killed run resumes from while validation
decides the epochs kept (`ncf_tfrs.training.validation`), scores the test
split once on the kept weights and writes metrics.json.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import os
import sys
import time
from typing import Optional

from absl import logging
import numpy as np
import tensorflow as tf

from ncf_tfrs import data as data_lib
from ncf_tfrs import model as model_lib
from ncf_tfrs.training import callbacks as callbacks_lib
from ncf_tfrs.training import checkpoints
from ncf_tfrs.training import config as config_lib
from ncf_tfrs.training import distribute
from ncf_tfrs.training import cold_users
from ncf_tfrs.training import evaluation
from ncf_tfrs.training import projector
from ncf_tfrs.training import resume
from ncf_tfrs.training import threads
from ncf_tfrs.training import validation


@dataclasses.dataclass
class TrainedRun:
  """What a finished run hands to the export: the model and its data."""
  model: model_lib.RecommenderModel
  vocabulary: data_lib.Vocabulary
  movies: data_lib.Movies
  metrics: dict[str, object]
  rated: data_lib.RatedHistory


def write_metrics(model_dir: str, metrics: dict[str, object]) -> None:
  with tf.io.gfile.GFile(os.path.join(model_dir, checkpoints.METRICS_FILE),
                         "w") as f:
    json.dump(metrics, f, indent=2)


def _retrieval_recalls(lists: evaluation.ListEvaluator,
                       model) -> dict[str, float]:
  """Retrieval recall@K of `model` on the validation slice."""
  return {k: v for k, v in lists(model, retrieval_only=True).items()
          if k.startswith("retrieval_recall")}


def run(cfg: config_lib.ExperimentConfig,
        cluster_resolver=None) -> Optional[TrainedRun]:
  """Trains, evaluates and writes metrics.json.

  Under a distributed strategy, only the chief evaluates and writes files; it
  does so on one device, from the final checkpoint. Other workers return None
  once training is done.

  Args:
    cfg: the run's configuration.
    cluster_resolver: the parameter-server cluster (default: TF_CONFIG).
  """
  op_threads = threads.configure(cfg.threads)
  strategy = distribute.make_strategy(cfg.distribute, cluster_resolver)
  chief = distribute.is_chief(strategy)
  model_dir = cfg.train.model_dir
  if chief:
    tf.io.gfile.makedirs(model_dir)
    with tf.io.gfile.GFile(
        os.path.join(model_dir, checkpoints.CONFIG_FILE), "w") as f:
      f.write(cfg.to_json())

  data = cfg.data
  tf.keras.utils.set_random_seed(data.seed)  # Initial weights too.
  data_lib.prepare(data.dataset, data.data_dir, data.manual_dir, data.download)
  movies = data_lib.load_movies(data.dataset, data.data_dir)
  ratings = data_lib.load(data.dataset, data.data_dir, movies)
  cold = known_cold = None
  if data.cold_user_fraction:
    ratings, cold = data_lib.hold_out_users(ratings, data.cold_user_fraction,
                                            data.seed)
    if data.cold_known_ratings:
      known_cold, cold = data_lib.first_by_time(cold,
                                                data.cold_known_ratings)
  train_and_validation, test = data_lib.split(ratings, data.split,
                                              data.test_fraction, data.seed)
  if data.validation_fraction:
    train, valid = data_lib.carve_validation(
        train_and_validation, data.split, data.validation_fraction, data.seed)
  else:
    train, valid = train_and_validation, None
  if known_cold is not None:
    # Always trained on, never validated or tested on.
    train = train.concat(known_cold)
    train_and_validation = train_and_validation.concat(known_cold)
  logging.info("%s: %d ratings, %d train / %d validation / %d test (%s "
               "split)", data.dataset, len(ratings), len(train),
               len(valid) if valid else 0, len(test), data.split)
  vocabulary = checkpoints.restore_vocabulary(model_dir, train,
                                              write=chief)
  # What serving leaves out: everything the users rated before the test.
  rated = data_lib.RatedHistory.from_ratings(train_and_validation,
                                             vocabulary)
  if chief:
    checkpoints.save_history(model_dir, rated)

  train_counts = np.bincount(
      train.movie, minlength=len(train.movie_ids))
  def train_dataset(batch_size=cfg.train.batch_size, num_shards=1,
                    shard_index=0, batches_per_pass=None, first_batch=0,
                    passes=cfg.train.epochs):
    return data_lib.make_dataset(
        train, batch_size, shuffle=True, seed=data.seed,
        movie_counts=train_counts, drop_remainder=True, num_shards=num_shards,
        shard_index=shard_index, passes=passes, first_batch=first_batch,
        batches_per_pass=batches_per_pass,
        history_share=cfg.model.history_share,
        history_length=cfg.model.history_length)
  def eval_dataset(ratings, num_shards=1, shard_index=0):
    return data_lib.make_dataset(
        ratings, cfg.train.eval_batch_size, shuffle=False,
        movie_counts=train_counts, num_shards=num_shards,
        shard_index=shard_index)

  test_ds = eval_dataset(test)

  distributed = cfg.distribute.strategy != "default"
  distribute.check_batch_size(strategy, cfg.train.batch_size,
                              cfg.model.retrieval_batch_size)
  parameter_server = distribute.is_parameter_server(strategy)
  if parameter_server and cfg.train.eval_every_steps:
    raise ValueError("--eval_every_steps needs batch-level callbacks, which "
                     "Keras does not run under parameter_server; use 0.")
  with strategy.scope():
    model = model_lib.RecommenderModel(vocabulary.user_ids,
                                       vocabulary.movie_ids, cfg.model)
    model.compile(optimizer=model_lib.make_optimizer(model, cfg.optimizer),
                  steps_per_execution=cfg.train.steps_per_execution)
    model(next(iter(test_ds)))  # BackupAndRestore needs a built model.
    model_lib.create_slots(model)  # The train step is then traced once.
  if distributed and not parameter_server:
    # Keras's default sums each replica's already all-reduced metrics across
    # workers (AUC 1.4 on two workers).
    model.distribute_reduction_method = "first"

  steps_per_epoch = data_lib.num_batches(len(train), cfg.train.batch_size,
                                         drop_remainder=True)
  # A killed run goes on from its backup: the same batches, the same history.
  backup_dir = os.path.join(model_dir, checkpoints.BACKUP_DIR)
  first_step = resume.backup_step(backup_dir, steps_per_epoch,
                                  by_epoch=parameter_server)
  progress = (resume.load_progress(backup_dir, first_step) if chief
              else resume.RunProgress(steps=first_step))
  if first_step:
    logging.info("Resuming at step %d of %d from %s.", first_step,
                 steps_per_epoch * cfg.train.epochs, backup_dir)
  valid_input, valid_steps = distribute.distribute_validation_data(
      strategy, lambda shards, index: eval_dataset(valid, shards, index),
      -(-len(valid) // cfg.train.eval_batch_size)) if valid else (None, None)
  if distributed:
    train_ds = distribute.distribute_training_data(
        strategy, train_dataset, cfg.train.batch_size, steps_per_epoch,
        first_step)
  else:
    train_ds = train_dataset(first_batch=first_step)
  if cfg.train.eval_every_steps:
    held_out = valid or test
    sample = evaluation.held_out_sample(len(held_out),
                                        cfg.train.curve_sample_ratings)
    counter = callbacks_lib.HeldOutCurve(
        eval_dataset(held_out.take(sample)), cfg.train.eval_every_steps,
        cfg.train.batch_size, progress.steps, progress.curve,
        progress.train_seconds)
  else:
    counter = callbacks_lib.StepCounter(progress.steps)
  watched = validation.monitors(cfg.model, max(cfg.eval.recall_ks))
  monitor = validation.ValidationMonitor(
      functools.partial(_retrieval_recalls, evaluation.ListEvaluator(
          vocabulary, train, valid, cfg.eval)),
      watched, cfg.train.early_stopping_patience,
      os.path.join(model_dir, validation.HISTORY_FILE) if chief else None
  ) if valid else None
  # BackupAndRestore counts calls of its batch hook, one per execution.
  backup_steps = cfg.train.checkpoint_every_steps
  backup_every = None if backup_steps is None else -(
      -min(backup_steps, steps_per_epoch) // cfg.train.steps_per_execution)
  epoch_checkpoints = os.path.join(model_dir, checkpoints.CHECKPOINT_DIR,
                                   "epoch-{epoch:03d}")  # 1-based, as Keras's.

  def kept_backup(epoch: int) -> Optional[str]:  # 0-based, at its end.
    if not monitor.best_so_far(epoch + 1):
      return None
    return epoch_checkpoints.format(epoch=epoch + 1)

  epoch_timer = callbacks_lib.EpochTimer(progress.epoch_seconds,
                                         progress.epoch_losses,
                                         progress.epoch_boundary_seconds)

  def progress_at(step: int) -> resume.RunProgress:
    epochs_done = step // steps_per_epoch
    return resume.RunProgress(
        steps=step, epoch_losses=epoch_timer.losses[:epochs_done],
        epoch_seconds=epoch_timer.seconds[:epochs_done],
        epoch_boundary_seconds=epoch_timer.boundaries_so_far()[:epochs_done],
        train_seconds=progress.train_seconds + time.perf_counter() - start,
        curve=[p for p in getattr(counter, "points", []) if p["step"] <= step])

  callbacks = [
      epoch_timer,
      counter,
      # Keras runs no batch-level callbacks that read logs under
      # parameter_server; a NaN is caught from the history there.
      *([] if parameter_server else [callbacks_lib.StopOnNaN(cfg.optimizer)]),
      # Before TensorBoard and the log, which then show the list metrics it
      # adds.
      *([monitor] if monitor else []),
      callbacks_lib.ProgressLog(cfg.train.epochs, steps_per_epoch,
                                live=sys.stdout.isatty()),
      callbacks_lib.TensorBoard(os.path.join(model_dir, checkpoints.LOG_DIR)),
      *([validation.LastEpochCheckpoint(epoch_checkpoints)]
        if monitor and distributed else []),
      *([] if monitor else [tf.keras.callbacks.ModelCheckpoint(
          epoch_checkpoints, save_weights_only=True)]),
      # Last: its epoch-end backup follows the other callbacks' epoch ends.
      resume.RunBackup(backup_dir,
                       "epoch" if parameter_server else backup_every,
                       steps_per_epoch, progress_at if chief else None,
                       every_seconds=cfg.train.checkpoint_every_seconds,
                       keep=kept_backup if monitor else None),
  ]
  start = time.perf_counter()
  history = model.fit(
      train_ds, epochs=cfg.train.epochs, callbacks=callbacks,
      validation_data=valid_input, validation_steps=valid_steps,
      steps_per_epoch=steps_per_epoch,
      verbose=0)  # ProgressLog prints.
  train_seconds = progress.train_seconds + time.perf_counter() - start
  epochs_run = counter.steps / steps_per_epoch
  losses = history.history.get("loss", [])
  if parameter_server and losses and not math.isfinite(float(losses[-1])):
    raise callbacks_lib.NaNLossError(
        f"The training loss became {losses[-1]}. Lower the learning rates.")
  distributed_metrics = {}
  if distributed and not parameter_server:
    # Every worker takes part; compared below with the checkpoint's metrics.
    distributed_metrics["test_in_training_strategy"] = {
        k: float(v) for k, v in model.evaluate(
            test_ds, return_dict=True, verbose=0).items()}
  if parameter_server:
    distributed_metrics["embedding_shards"] = distribute.embedding_shards(model)
  if not chief:
    return None
  if distributed:
    # The chief's final checkpoint, on one device: what an export reads.
    model, _, _ = checkpoints.load_trained(model_dir)
    model.compile()
  kept = {}
  if monitor:
    kept = validation.best_epochs(monitor.history, watched)
    last = len(monitor.history) and monitor.history[-1]["epoch"]
    validation.restore_kept_weights(
        model, {task: e for task, e in kept.items() if e != last},
        lambda epoch: epoch_checkpoints.format(epoch=epoch),
        lambda: checkpoints.empty_model(vocabulary, cfg.model))
    model.save_weights(os.path.join(model_dir, checkpoints.CHECKPOINT_DIR,
                                    checkpoints.KEPT_CHECKPOINT))

  # The test split, scored once, on the kept weights. Movies rated in the
  # validation slice are the user's too: never recommended again.
  ranking = model.evaluate(test_ds, return_dict=True, verbose=0)
  lists = evaluation.evaluate_lists(model, vocabulary, train_and_validation,
                                    test, cfg.eval)
  if known_cold is not None:
    # The held-out users' later ratings, served to them as known users.
    cold_metrics = {f"known_given_{data.cold_known_ratings}":
                    evaluation.evaluate_lists(model, vocabulary,
                                              train_and_validation, cold,
                                              cfg.eval)}
  else:
    cold_metrics = {
        f"given_{n}": cold_users.ColdUserEvaluator(vocabulary, cold, n,
                                                   cfg.eval)(model)
        for n in cold_users.GIVEN_RATINGS} if cold else None
  projector.write_movie_projector(
      os.path.join(model_dir, checkpoints.LOG_DIR), model, vocabulary, movies)
  metrics = {
      "dataset": data.dataset,
      "split": data.split,
      "train_ratings": len(train),
      "validation_ratings": len(valid) if valid else 0,
      "test_ratings": len(test),
      "steps_run": counter.steps,
      "epochs_run": epochs_run,
      "train_seconds": train_seconds,
      "train_ratings_per_s": epochs_run * len(train) / train_seconds,
      "train_loss_by_epoch": epoch_timer.losses,
      "epoch_seconds": epoch_timer.seconds,
      "epoch_boundary_seconds": epoch_timer.boundary_seconds,
      "test": {k: float(v) for k, v in ranking.items()},
      "lists": lists,
      **({"cold_users": cold_metrics} if cold_metrics else {}),
      "distribution_strategy": cfg.distribute.strategy,
      "replicas_per_step": distribute.replicas_per_step(strategy),
      "op_threads": {"intra_op": op_threads[0], "inter_op": op_threads[1]},
      **distributed_metrics,
  }
  if monitor:
    metrics["validation"] = {
        "history": monitor.history,
        "kept_epoch": kept,
        "monitors": {m.task: m.metric for m in watched},
        "stopped_early": monitor.stopped_early,
    }
  if cfg.train.eval_every_steps:
    metrics["curve"] = counter.points
  write_metrics(model_dir, metrics)
  return TrainedRun(model, vocabulary, movies, metrics, rated)
