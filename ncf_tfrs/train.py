r"""Trains retrieval + NCF ranking on MovieLens, evaluates, writes metrics.

  python -m ncf_tfrs.train --flagfile configs/ml32m.flags
  python -m ncf_tfrs.train --flagfile configs/demo.flags --epochs 5

Flags after the flagfile override it. The model directory receives the
vocabularies, checkpoints, TensorBoard logs and metrics.json. A run that is
killed resumes from its last backup when the same command is run again.

This is the command only: flags -> `ExperimentConfig` -> `training.run` ->
`export.export_model`. It declares its own flags; everything below it takes
typed arguments.
"""

from __future__ import annotations

import os

from absl import app
from absl import flags

import ncf_tfrs  # pylint: disable=unused-import  (Keras 2 before TensorFlow)
from ncf_tfrs import cli
from ncf_tfrs import data as data_lib
from ncf_tfrs import export
from ncf_tfrs import model as model_lib
from ncf_tfrs import training
from ncf_tfrs.training import config as config_lib
from ncf_tfrs.training import distribute
from ncf_tfrs.training import evaluation
from ncf_tfrs.training import threads

_D = config_lib.ExperimentConfig()

# Data.
_DATASET = flags.DEFINE_enum(
    "dataset", _D.data.dataset, list(data_lib.DATASET_CONFIGS),
    "MovieLens release (TFDS movielens_users config); synthetic-* are "
    "generated locally.")
_DATA_DIR = flags.DEFINE_string("data_dir", _D.data.data_dir,
                                "TFDS data directory (TFDS default if unset).")
_MANUAL_DIR = flags.DEFINE_string(
    "manual_dir", _D.data.manual_dir,
    "Folder holding the official MovieLens archive (ml-32m.zip or its "
    "extracted ml-32m/ folder), for machines without internet.")
_DOWNLOAD = flags.DEFINE_bool(
    "download", _D.data.download,
    "Download a real release from grouplens.org if it is not prepared.")
_SPLIT = flags.DEFINE_enum(
    "split", _D.data.split, list(data_lib.SPLIT_METHODS),
    "random: the notebook's 80/20 over ratings (sklearn-compatible); "
    "temporal: each user's latest ratings held out; stratified: a seeded "
    "random share of each user's ratings held out (Microsoft Recommenders' "
    "ml-100k protocol with --test_fraction=0.25).")
_TEST_FRACTION = flags.DEFINE_float("test_fraction", _D.data.test_fraction,
                                    "Share of ratings held out.",
                                    lower_bound=0.0, upper_bound=1.0)
_VALIDATION_FRACTION = flags.DEFINE_float(
    "validation_fraction", _D.data.validation_fraction,
    "Share of the training split held out for validation, which decides the "
    "epochs kept and when to stop (0: train on all of it, keep the last "
    "epoch). The test split is scored once, at the end.",
    lower_bound=0.0, upper_bound=1.0)
_SEED = flags.DEFINE_integer("seed", _D.data.seed,
                             "Seed of the splits and of shuffling.")
_COLD_USERS = flags.DEFINE_float(
    "cold_user_fraction", _D.data.cold_user_fraction,
    "Share of the users held out of training entirely, then served from "
    "their first 5, 10 and 20 ratings as new users (metrics.json's "
    "cold_users; needs --history_share > 0). 0: none.",
    lower_bound=0.0, upper_bound=0.5)
_COLD_KNOWN = flags.DEFINE_integer(
    "cold_known_ratings", _D.data.cold_known_ratings,
    "With --cold_user_fraction: train with each held-out user's first N "
    "ratings and score them as known users on their later ratings "
    "(metrics.json's cold_users.known_given_N), the retrained reference "
    "for the history side. 0: held-out users stay out of training.",
    lower_bound=0)

# Model.
_RETRIEVAL_DIM = flags.DEFINE_integer(
    "retrieval_embedding_dim", _D.model.retrieval_embedding_dim,
    "Width of the two-tower embeddings.", lower_bound=1)
_NCF_DIM = flags.DEFINE_integer(
    "ncf_embedding_dim", _D.model.ncf_embedding_dim,
    "Width of each NCF embedding (GMF and MLP).", lower_bound=1)
_NCF_MLP = flags.DEFINE_list(
    "ncf_mlp_layers", [str(u) for u in _D.model.ncf_mlp_layers],
    "Widths of the NCF MLP's ReLU layers, e.g. 64,32,16.")
_RETRIEVAL_WEIGHT = flags.DEFINE_float(
    "retrieval_weight", _D.model.retrieval_weight,
    "Weight of the retrieval loss (0 skips the task).", lower_bound=0.0)
_RANKING_WEIGHT = flags.DEFINE_float(
    "ranking_weight", _D.model.ranking_weight,
    "Weight of the ranking loss (0 skips the task).", lower_bound=0.0)
_RATING_WEIGHT = flags.DEFINE_float(
    "rating_weight", _D.model.rating_weight,
    "Weight of the ordinal rating task, which trains the NCF logit on every "
    "half-star threshold of the rating (0 skips it; needs ranking_weight > "
    "0).", lower_bound=0.0)
_RETRIEVAL_L2 = flags.DEFINE_float(
    "retrieval_l2", _D.model.retrieval_l2,
    "L2 penalty on the retrieval embedding rows a batch looks up.",
    lower_bound=0.0)
_NCF_L2 = flags.DEFINE_float(
    "ncf_l2", _D.model.ncf_l2,
    "L2 penalty on the NCF embedding rows a batch looks up and on its Dense "
    "kernels.", lower_bound=0.0)
_NCF_BIAS = flags.DEFINE_bool(
    "ncf_bias", _D.model.ncf_bias,
    "Add a learned user bias and movie bias to the NCF logit.")
_HISTORY_SHARE = flags.DEFINE_float(
    "history_share", _D.model.history_share,
    "Share of each training batch also scored from the user's first "
    "ratings by time, training the history encoder that serves users known "
    "only by their ratings (0: no history side; its cost and quality: "
    "docs/results/new_users.md).",
    lower_bound=0.0, upper_bound=0.9)
_HISTORY_LENGTH = flags.DEFINE_integer(
    "history_length", _D.model.history_length,
    "Most ratings in a training history.", lower_bound=1)
_RETRIEVAL_BATCH = flags.DEFINE_integer(
    "retrieval_batch_size", _D.model.retrieval_batch_size,
    "The in-batch softmax runs over chunks of this many ratings of each "
    "batch: its cost grows with the square of the chunk.", lower_bound=1)
_BIAS_CORRECTION = flags.DEFINE_bool(
    "sampling_bias_correction", _D.model.sampling_bias_correction,
    "Correct retrieval logits by log(movie sampling probability).")
_ACCIDENTAL_HITS = flags.DEFINE_bool(
    "remove_accidental_hits", _D.model.remove_accidental_hits,
    "Don't use a batch's positive movie as a negative of the same movie.")

# Optimizer.
_EMBEDDING_LR = flags.DEFINE_float(
    "embedding_learning_rate", _D.optimizer.embedding_learning_rate,
    "Adagrad learning rate of the embedding tables.", lower_bound=0.0)
_DENSE_LR = flags.DEFINE_float(
    "dense_learning_rate", _D.optimizer.dense_learning_rate,
    "Adam learning rate of the dense layers.", lower_bound=0.0)

# Training.
_MODEL_DIR = flags.DEFINE_string(
    "model_dir", _D.train.model_dir,
    "Where checkpoints, logs, vocabularies and metrics.json are written.")
_EPOCHS = flags.DEFINE_integer(
    "epochs", _D.train.epochs,
    "The most passes over the training split (validation may stop earlier).",
    lower_bound=1)
_PATIENCE = flags.DEFINE_integer(
    "early_stopping_patience", _D.train.early_stopping_patience,
    "Epochs without a better validation metric before training stops (0: "
    "never stop early). Each task keeps its best validation epoch either "
    "way.", lower_bound=0)
_BATCH_SIZE = flags.DEFINE_integer(
    "batch_size", _D.train.batch_size,
    "Ratings per training step (the ranking task's batch). This is the "
    "global batch: under mirrored and multi_worker_mirrored each of R "
    "replicas trains on batch_size/R ratings (R must divide it) and their "
    "summed gradients make one step, so the same flagfile takes the same "
    "steps on any number of replicas; retrieval chunks are cut from each "
    "replica's share. Under parameter_server each worker step takes a whole "
    "batch.", lower_bound=1)
_CHECKPOINT_SECONDS = flags.DEFINE_float(
    "checkpoint_every_seconds", _D.train.checkpoint_every_seconds,
    "Seconds of training between the backups that a killed run resumes "
    "from (and one at each epoch's end).", lower_bound=0)
_CHECKPOINT_STEPS = flags.DEFINE_integer(
    "checkpoint_every_steps", _D.train.checkpoint_every_steps,
    "Back up every this many steps instead of --checkpoint_every_seconds.",
    lower_bound=1)
_STEPS_PER_EXECUTION = flags.DEFINE_integer(
    "steps_per_execution", _D.train.steps_per_execution,
    "Training steps per call into the graph (less Python overhead per step).",
    lower_bound=1)
_EVAL_EVERY_STEPS = flags.DEFINE_integer(
    "eval_every_steps", _D.train.eval_every_steps,
    "Steps between evaluations of a fixed sample of the validation slice "
    "(of the test split without one), recorded as the learning curve in "
    "metrics.json (0: none).",
    lower_bound=0)

# Evaluation.
_EVAL_USERS = flags.DEFINE_integer(
    "eval_users", _D.eval.max_users,
    "Users in the top-k list evaluation (a seeded sample); 0 for all.",
    lower_bound=0)
_NUM_CANDIDATES = flags.DEFINE_integer(
    "num_candidates", _D.eval.num_candidates,
    "Retrieval candidates the NCF scorer reranks.", lower_bound=1)

# Export.
_EXPORT_DIR = flags.DEFINE_string(
    "export_dir", _D.export.export_dir,
    "TF Serving model root the trained model is exported into as a new "
    "version (empty: no export). See export/README.md.")
_MODEL_NAME = flags.DEFINE_string("model_name", _D.export.model_name,
                                  "Model name under --export_dir.")
_SCANN_MODEL = flags.DEFINE_bool(
    "scann_model", _D.export.scann_model,
    "Also export the SavedModel with the ScaNN op inside (in-process use and "
    "custom TF Serving builds; stock TF Serving cannot load it).")

_PRINT_CONFIG = flags.DEFINE_bool(
    "print_config", False,
    "Print the run's resolved configuration as JSON and exit: what a "
    "flagfile plus overrides amounts to, without loading data.")


# Distribution.
_STRATEGY = flags.DEFINE_enum(
    "distribution_strategy", _D.distribute.strategy, distribute.STRATEGIES,
    "default: one device. mirrored: this host's devices. "
    "multi_worker_mirrored: several hosts (TF_CONFIG), synchronous. "
    "parameter_server: embedding tables sharded over the TF_CONFIG's ps tasks; "
    "run the same command on every task (workers and ps only serve). See the "
    "README's multi-host section.")
_NUM_CPU_DEVICES = flags.DEFINE_integer(
    "num_cpu_devices", _D.distribute.num_cpu_devices,
    "Split the CPU into this many logical devices (mirrored without GPUs: "
    "tests, overhead measurements); 0 keeps it whole.", lower_bound=0)
_PS_MIN_SHARD_BYTES = flags.DEFINE_integer(
    "ps_min_shard_bytes", _D.distribute.ps_min_shard_bytes,
    "parameter_server: variables are split into shards of at least this "
    "many bytes, at most one per ps task.", lower_bound=1)
_CLUSTER_TIMEOUT = flags.DEFINE_integer(
    "cluster_timeout_s", _D.distribute.cluster_timeout_s,
    "Seconds a collective waits for the other workers before failing.",
    lower_bound=1)

# Host.
_INTRA_OP_THREADS = flags.DEFINE_integer(
    "intra_op_threads", _D.threads.intra_op,
    "Threads one TensorFlow op may use. Unset: half the cores (at least 1), "
    "measured fastest on 2 cores (docs/results/training_speed.md); 0: "
    "TensorFlow's default (all the cores).", lower_bound=0)
_INTER_OP_THREADS = flags.DEFINE_integer(
    "inter_op_threads", _D.threads.inter_op,
    "TensorFlow ops run at once. Unset: 2 (1 on one core); 0: TensorFlow's "
    "default (as many as the cores).", lower_bound=0)


def config_from_flags() -> config_lib.ExperimentConfig:
  """The typed config of this run; the only reader of FLAGS."""
  try:
    mlp_layers = tuple(int(u) for u in _NCF_MLP.value)
  except ValueError as e:
    raise app.UsageError(
        f"--ncf_mlp_layers must be integers, got {_NCF_MLP.value}") from e
  if not 0.0 < _TEST_FRACTION.value < 1.0:
    raise app.UsageError("--test_fraction must be strictly between 0 and 1.")
  # The configs check their own fields, which are named as their flags.
  try:
    return config_lib.ExperimentConfig(
        data=config_lib.DataConfig(
            dataset=_DATASET.value,
            data_dir=_DATA_DIR.value,
            manual_dir=_MANUAL_DIR.value,
            download=_DOWNLOAD.value,
            split=_SPLIT.value,
            test_fraction=_TEST_FRACTION.value,
            validation_fraction=_VALIDATION_FRACTION.value,
            seed=_SEED.value,
            cold_user_fraction=_COLD_USERS.value,
            cold_known_ratings=_COLD_KNOWN.value),
        model=model_lib.ModelConfig(
            retrieval_embedding_dim=_RETRIEVAL_DIM.value,
            ncf_embedding_dim=_NCF_DIM.value,
            ncf_mlp_layers=mlp_layers,
            retrieval_weight=_RETRIEVAL_WEIGHT.value,
            ranking_weight=_RANKING_WEIGHT.value,
            rating_weight=_RATING_WEIGHT.value,
            retrieval_l2=_RETRIEVAL_L2.value,
            ncf_l2=_NCF_L2.value,
            ncf_bias=_NCF_BIAS.value,
            history_share=_HISTORY_SHARE.value,
            history_length=_HISTORY_LENGTH.value,
            retrieval_batch_size=_RETRIEVAL_BATCH.value,
            sampling_bias_correction=_BIAS_CORRECTION.value,
            remove_accidental_hits=_ACCIDENTAL_HITS.value),
        optimizer=model_lib.OptimizerConfig(
            embedding_learning_rate=_EMBEDDING_LR.value,
            dense_learning_rate=_DENSE_LR.value),
        train=config_lib.TrainConfig(
            model_dir=_MODEL_DIR.value,
            epochs=_EPOCHS.value,
            early_stopping_patience=_PATIENCE.value,
            batch_size=_BATCH_SIZE.value,
            checkpoint_every_seconds=_CHECKPOINT_SECONDS.value,
            checkpoint_every_steps=_CHECKPOINT_STEPS.value,
            steps_per_execution=_STEPS_PER_EXECUTION.value,
            eval_every_steps=_EVAL_EVERY_STEPS.value),
        eval=evaluation.ListEvalConfig(
            max_users=_EVAL_USERS.value or None,
            num_candidates=_NUM_CANDIDATES.value,
            seed=_SEED.value),
        export=config_lib.ExportConfig(
            export_dir=_EXPORT_DIR.value or None,
            model_name=_MODEL_NAME.value,
            scann_model=_SCANN_MODEL.value),
        distribute=distribute.DistributeConfig(
            strategy=_STRATEGY.value,
            num_cpu_devices=_NUM_CPU_DEVICES.value,
            ps_min_shard_bytes=_PS_MIN_SHARD_BYTES.value,
            cluster_timeout_s=_CLUSTER_TIMEOUT.value),
        threads=threads.ThreadConfig(intra_op=_INTRA_OP_THREADS.value,
                                     inter_op=_INTER_OP_THREADS.value))
  except ValueError as e:
    raise app.UsageError(str(e)) from e


def run(cfg: config_lib.ExperimentConfig) -> dict[str, object]:
  """Trains, evaluates and exports; returns metrics.json's contents.

  A worker of a distributed run returns {}: the chief evaluates and exports.
  """
  trained = training.run(cfg)
  if trained is None:
    return {}
  metrics = trained.metrics
  if cfg.export.export_dir:
    metrics["export"] = export.export_model(
        trained.model, trained.vocabulary, trained.movies,
        cfg.export.export_dir, cfg.export.model_name,
        export.ScannConfig(num_neighbors=cfg.eval.num_candidates),
        cfg.export.scann_model, trained.rated)
    training.write_metrics(cfg.train.model_dir, metrics)
  return metrics


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  cfg = config_from_flags()
  if _PRINT_CONFIG.value:
    print(cfg.to_json())
    return
  if distribute.serve_if_server_task(cfg.distribute):
    return
  cli.check_writable_dir("model_dir", cfg.train.model_dir)
  if cfg.export.export_dir:
    cli.check_writable_dir("export_dir", cfg.export.export_dir)
  metrics = run(cfg)
  if metrics:
    print(summary(metrics, cfg.train.model_dir))


def summary(metrics: dict[str, object], model_dir: str) -> str:
  """The few lines a user reads at the end of a run; metrics.json has all."""
  test, lists = metrics["test"], metrics["lists"]
  kept = metrics.get("validation", {}).get("kept_epoch", {})
  lines = [
      f"{metrics['dataset']} ({metrics['split']} split): "
      f"{metrics['train_ratings']:,} training / "
      f"{metrics['validation_ratings']:,} validation / "
      f"{metrics['test_ratings']:,} test ratings",
      f"trained {metrics['epochs_run']:.2f} epochs in "
      f"{metrics['train_seconds']:.0f} s "
      f"({metrics['train_ratings_per_s']:,.0f} ratings/s)" +
      (", kept epochs " + ", ".join(f"{task} {epoch}"
                                    for task, epoch in kept.items())
       if kept else ""),
  ]
  if "ranking_auc" in test:
    lines.append(f"test: AUC {test['ranking_auc']:.4f}, accuracy "
                 f"{test['ranking_accuracy']:.4f}, log loss "
                 f"{test['ranking_log_loss']:.4f}")
  recall = sorted((k for k in lists if k.startswith("retrieval_recall_at_")),
                  key=lambda k: int(k.rsplit("_", 1)[1]))
  if recall:
    lines.append("test: " + ", ".join(
        f"recall@{k.rsplit('_', 1)[1]} {lists[k]:.4f}" for k in recall))
  lines.append("metrics: " + os.path.join(model_dir, "metrics.json"))
  if metrics.get("export"):
    lines.append(f"export: {metrics['export']}")
  return "\n".join(lines)


def run_main() -> None:
  """Console-script entry point (`ncf-tfrs-train`)."""
  cli.run(main, interrupted="interrupted; rerun the same command (same "
          "--model_dir) to go on from its last backup.")


if __name__ == "__main__":
  run_main()
