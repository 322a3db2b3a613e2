"""The train suite's section: quality and speed tables, curves and recall plots."""

from __future__ import annotations

from typing import Any, Optional, Sequence

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from ncf_tfrs.bench.report import common


_STAGE_TITLES = {"notebook": "notebook recipe (baseline)",
                 "product": "product (joint retrieval + NCF)",
                 "product_curve": "the same with learning-curve points",
                 "product_csv": "the same, read from the CSV release",
                 "tutorial": "TFRS basic-retrieval tutorial"}


def _stage_ranking(name: str, stage: dict[str, Any]) -> dict[str, Any]:
  """Held-out ranking metrics of a stage under common names."""
  test = stage.get("test") or {}
  if name == "notebook":
    return {"auc": test.get("auc"), "accuracy": test.get("accuracy"),
            "log_loss": test.get("log_loss", test.get("loss")),
            "mse": test.get("mse"), "mae": test.get("mae")}
  return {k: test.get(f"ranking_{k}")
          for k in ("auc", "accuracy", "log_loss", "mse", "mae")}


def _curve_series(name: str, stage: dict[str, Any], metric: str
                  ) -> tuple[list[float], list[float]]:
  """(train seconds, metric) of a stage's curve; metric: auc or log_loss."""
  if name == "notebook":
    keys = ("auc",) if metric == "auc" else ("log_loss", "loss")
  else:
    keys = (f"ranking_{metric}",)
  xs, ys = [], []
  for point in stage.get("curve") or []:
    value = next((point[k] for k in keys if point.get(k) is not None), None)
    if value is not None and point.get("train_seconds") is not None:
      xs.append(point["train_seconds"])
      ys.append(value)
  return xs, ys


def _pools(threads) -> str:
  """(intra-op, inter-op) threads as "1/2"."""
  return "/".join(str(n) for n in threads)


def train_checks(doc: dict[str, Any]) -> list[list[str]]:
  """The training targets as rows: target, measured, required, status."""
  targets = doc.get("targets") or {}
  stages = doc.get("stages") or {}
  notebook, product = stages.get("notebook"), stages.get("product")
  tutorial = stages.get("tutorial")
  nb = _stage_ranking("notebook", notebook) if notebook else {}
  pr = _stage_ranking("product", product) if product else {}
  ge = lambda m, r: m >= r  # pylint: disable=unnecessary-lambda-assignment
  le = lambda m, r: m <= r  # pylint: disable=unnecessary-lambda-assignment
  rows = []

  # The headline: the train command a user runs, whole run, against the
  # windows of the same bench run; also on the CSV release, where run.
  commands = [("product", "train command")] + (
      [("product_csv", "train command on the CSV release")]
      if "product_csv" in stages else [])
  for stage, command in commands:
    whole = common.get(stages.get(stage), "train_ratings_per_s")
    for key, target_key in (("joint", "whole_run_vs_windows"),
                            ("notebook", "whole_run_vs_notebook_windows")):
      factor = targets.get(target_key)
      window = common.get(doc, "throughput", key, "median")
      rows.append(common.check(
          f"{command}, whole run, ratings/s vs {key} windows × "
          f"{common.num(factor)}", whole,
          window * factor if window is not None and factor is not None
          else None, ge, common.rate, "≥",
          "" if whole is not None and window is not None
          else f"needs {stage} and throughput stages"))
  boundaries = common.get(product, "epoch_boundary_seconds")
  rows.append(common.check(
      "longest pause between epochs (s)",
      max(boundaries) if boundaries else None,
      targets.get("epoch_boundary_seconds"), le, common.seconds, "≤",
      "" if boundaries else "product stage has no epoch_boundary_seconds"))

  for key, name in (("joint", "joint training ratings/s"),
                    ("ranking_only", "ranking-only training ratings/s")):
    measured = common.get(doc, "throughput", key, "median")
    rows.append(common.check(name, measured,
                       targets.get(f"{key}_ratings_per_s"), ge, common.rate, "≥",
                       "" if doc.get("throughput") else
                       "no throughput section"))
  rows.append(common.check("product peak RSS (GiB)", common.get(product, "peak_rss_gib"),
                     targets.get("peak_rss_gib"), le, common.gib, "≤",
                     "" if product else "no product stage"))

  def gain(metric, target_key, title):
    if nb.get(metric) is None or pr.get(metric) is None:
      return common.check(title, None, targets.get(target_key), ge, common.metric, "≥",
                    "needs product and notebook stages")
    return common.check(title, pr[metric] - nb[metric], targets.get(target_key), ge,
                  lambda v: common.num(v, "{:+.4f}"), "≥")

  rows.append(gain("accuracy", "accuracy_gain",
                   "accuracy gain over notebook"))
  rows.append(gain("auc", "auc_gain", "AUC gain over notebook"))

  oracle_auc = common.get(doc, "oracle", "auc")
  halfway = (nb["auc"] + (oracle_auc - nb["auc"]) / 2
             if oracle_auc is not None and nb.get("auc") is not None else None)
  rows.append(common.check(
      "product AUC halfway from notebook to oracle", pr.get("auc"), halfway,
      ge, common.metric, "≥",
      "no oracle: real data" if doc.get("oracle") is None and "oracle" in doc
      else "needs oracle, product and notebook"))

  fraction = targets.get("wall_time_fraction")
  nb_wall = common.get(notebook, "wall_seconds")
  rows.append(common.check(
      f"product wall time (s) vs notebook's × {common.num(fraction)}",
      common.get(product, "wall_seconds"),
      nb_wall * fraction if nb_wall is not None and fraction is not None
      else None, le, common.seconds, "≤",
      "" if nb_wall is not None and common.get(product, "wall_seconds") is not None
      else "needs product and notebook stages"))

  recall_gain = targets.get("recall_at_100_gain")
  tutorial_recall = common.get(tutorial, "lists", "retrieval_recall_at_100")
  rows.append(common.check(
      "retrieval recall@100 vs tutorial's × "
      f"{common.num(1 + recall_gain) if recall_gain is not None else '–'}",
      common.get(product, "lists", "retrieval_recall_at_100"),
      tutorial_recall * (1 + recall_gain)
      if tutorial_recall is not None and recall_gain is not None else None,
      ge, common.metric, "≥",
      "" if tutorial_recall is not None and common.get(
          product, "lists", "retrieval_recall_at_100") is not None
      else "needs product and tutorial stages"))
  return rows


def render_train(doc: dict[str, Any], images: dict[str, str],
                 relative_to: str, heading: str) -> tuple[str, list[str]]:
  """The training section and what it lacks."""
  missing = []
  stages = doc.get("stages") or {}
  parts = [f"{heading} Training: product vs the notebook's recipe", "",
           common.labels(doc, common.dataset_label(doc.get("dataset")) +
                   (f", {doc['split']} split" if doc.get("split") else ""),
                   "train"), ""]
  for name in ("notebook", "product", "tutorial"):
    if name not in stages:
      missing.append(f"training: no {name} stage in the train results")

  rows = []
  for name in ("notebook", "product", "product_curve", "product_csv",
               "tutorial"):
    stage = stages.get(name)
    if not stage:
      continue
    ranking = ({} if name == "tutorial" else _stage_ranking(name, stage))
    title = _STAGE_TITLES[name]
    if stage.get("flagfile"):
      title += f" `{stage['flagfile']}`"
    rows.append([
        title, common.rate(stage.get("train_ratings")), common.num(stage.get("epochs_run")),
        common.seconds(stage.get("train_seconds")),
        common.seconds(stage.get("wall_seconds")),
        common.rate(stage.get("train_ratings_per_s")),
        common.gib(stage.get("peak_rss_gib")), common.metric(ranking.get("auc")),
        common.metric(ranking.get("accuracy")), common.metric(ranking.get("log_loss")),
        common.metric(ranking.get("mse")), common.metric(ranking.get("mae")),
        common.metric(common.get(stage, "lists", "retrieval_recall_at_100"))])
  oracle = doc.get("oracle")
  if oracle:
    rows.append(["oracle (the generator's planted model)"] + ["–"] * 6 + [
        common.metric(oracle.get("auc")), common.metric(oracle.get("accuracy")),
        common.metric(oracle.get("log_loss")), "–", "–", "–"])
  if rows:
    parts += ["Held-out ratings (ranking) and per-user top 100 over the "
              "catalog (retrieval):", "",
              common.table(["recipe", "train ratings", "epochs", "train s",
                      "wall s", "ratings/s", "peak RSS GiB", "AUC",
                      "accuracy", "log loss", "MSE", "MAE",
                      "retrieval recall@100"], rows), ""]

  list_rows = []
  product, tutorial = stages.get("product"), stages.get("tutorial")
  for title, stage, prefix, all_k in (
      ("most popular", product, "popularity", False),
      ("NCF alone (scores retrieval's top 200)", product, "ncf_rerank", False),
      ("retrieval (product)", product, "retrieval", True),
      ("retrieval + NCF rerank (product)", product, "rerank", False),
      ("the same, rated movies left in", product, "rerank_with_seen",
       False),
      ("retrieval (tutorial)", tutorial, "retrieval", True)):
    lists = common.get(stage, "lists")
    if not lists:
      continue
    row = [title] + [common.metric(lists.get(f"retrieval_recall_at_{k}"))
                     if all_k else "–" for k in (10, 50, 100)]
    row += [common.metric(lists.get(f"{prefix}_liked_recall_at_10")),
            common.metric(lists.get(f"{prefix}_liked_ndcg_at_10"))]
    if any(cell != "–" for cell in row[1:]):
      list_rows.append(row)
  if list_rows:
    users = common.get(product, "lists", "eval_users")
    liked = common.get(product, "lists", "liked_eval_users")
    parts += [f"Top-k lists per user ({common.rate(users)} users; liked: "
              f"{common.rate(liked)} users with a held-out movie rated > 3):", "",
              common.table(["list", "recall@10", "recall@50", "recall@100",
                      "liked recall@10", "liked NDCG@10"], list_rows), ""]
  else:
    missing.append("training: no top-k list metrics")

  throughput = doc.get("throughput")
  if throughput:
    t_rows = []
    for key, title, show in (
        ("joint", "joint (retrieval + NCF), ratings/s", common.rate),
        ("ranking_only", "ranking only, ratings/s", common.rate),
        ("notebook", "notebook recipe, ratings/s", common.rate),
        ("joint_vs_notebook", "joint vs notebook", common.times),
        ("ranking_only_vs_notebook", "ranking only vs notebook", common.times)):
      if isinstance(throughput.get(key), dict):
        t = throughput[key]
        t_rows.append([title, show(t.get("median")), show(t.get("min")),
                       show(t.get("max"))])
    pools = throughput.get("threads")
    parts += [f"Training throughput, {common.num(throughput.get('repeats'))} "
              f"windows of {common.num(throughput.get('window_steps'))} steps" +
              (f" (TensorFlow's thread pools, intra-op/inter-op, 0 for "
               f"TensorFlow's default: product {_pools(pools['product'])}, "
               f"notebook {_pools(pools['notebook'])})" if pools else "") +
              ":", "",
              common.table(["measurement", "median", "min", "max"], t_rows), ""]
  else:
    missing.append("training: no throughput section")

  parts += ["Targets:", "",
            common.table(["target", "measured", "required", "status"],
                   train_checks(doc)), ""]
  for key, alt in ((common.TRAINING_CURVES_PNG, "held-out AUC and log loss vs "
                    "training seconds"),
                   (common.RECALL_PNG, "recall@K: popularity, retrieval, rerank")):
    if key in images:
      parts += [common.image(images[key], alt, relative_to), ""]
  return "\n".join(parts), missing


def plot_training_curves(doc: dict[str, Any], path: str) -> bool:
  """AUC and log loss vs training seconds, product vs notebook; False if no
  curve exists."""
  stages = doc.get("stages") or {}
  # The product's curve comes from its own stage (curve points slow the
  # run, so the product stage itself runs as users do, without them).
  series = {name: stages.get(source) for name, source in (
      ("notebook", "notebook"), ("product", "product_curve"))
            if (stages.get(source) or {}).get("curve")}
  if not series:
    return False
  fig = Figure(figsize=(11, 4.4), layout="constrained")
  FigureCanvasAgg(fig)
  axes = fig.subplots(1, 2)
  for ax, metric, title in ((axes[0], "auc", "held-out AUC"),
                            (axes[1], "log_loss", "held-out log loss")):
    for name, stage in series.items():
      xs, ys = _curve_series(name, stage, metric)
      ax.plot(xs, ys, marker="o", markersize=3, color=common.COLORS[name],
              label=_STAGE_TITLES[name])
    oracle = common.get(doc, "oracle", metric)
    if oracle is not None:
      ax.axhline(oracle, color="black", linestyle="--", linewidth=1,
                 label="oracle (planted model)")
    ax.set_xlabel("training wall-clock time (s)")
    ax.set_ylabel(f"{title} (higher is better)" if metric == "auc" else
                  f"{title} (lower is better)")
    ax.set_title(title)
    ax.set_xlim(left=0)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
  dataset = doc.get("dataset") or "dataset not recorded"
  fig.suptitle(f"Training curves on {dataset}" +
               (" (SYNTHETIC data)" if common.is_synthetic(dataset) else ""))
  fig.savefig(path, dpi=110)
  return True


def _bar_labels(ax, bars, values) -> None:
  for bar, value in zip(bars, values):
    if value is not None:
      ax.annotate(f"{value:.3f}", (bar.get_x() + bar.get_width() / 2,
                                   bar.get_height()),
                  xytext=(0, 2), textcoords="offset points", ha="center",
                  va="bottom", fontsize=7)


def _grouped_bars(ax, groups: Sequence[str],
                  bars: Sequence[tuple[str, str, Sequence[Optional[float]]]]
                  ) -> float:
  """Bars per group; returns the tallest value."""
  width = 0.8 / max(len(bars), 1)
  top = 0.0
  for i, (label, color, values) in enumerate(bars):
    xs = [g + (i - (len(bars) - 1) / 2) * width for g in range(len(groups))]
    heights = [v if v is not None else 0.0 for v in values]
    drawn = ax.bar(xs, heights, width * 0.95, label=label, color=color)
    _bar_labels(ax, drawn, values)
    top = max([top] + [v for v in values if v is not None])
  ax.set_xticks(range(len(groups)), groups)
  return top


def plot_recall(doc: dict[str, Any], path: str) -> bool:
  """Retrieval recall@K and liked recall/NDCG@10 as grouped bars; False if
  there are no list metrics."""
  stages = doc.get("stages") or {}
  product = common.get(stages, "product", "lists") or {}
  tutorial = common.get(stages, "tutorial", "lists") or {}
  if not product and not tutorial:
    return False
  fig = Figure(figsize=(11, 4.4), layout="constrained")
  FigureCanvasAgg(fig)
  left, right = fig.subplots(1, 2)

  bars = [(label, common.COLORS[color],
           [lists.get(f"retrieval_recall_at_{k}") for k in (10, 50, 100)])
          for label, color, lists in (
              ("TFRS tutorial retrieval", "tutorial", tutorial),
              ("product retrieval", "product", product)) if lists]
  top = _grouped_bars(left, ["K = 10", "K = 50", "K = 100"], bars)
  left.set_ylabel("recall@K (fraction of held-out movies)")
  left.set_title("Retrieval: all held-out movies in the top K")
  left.set_ylim(0, max(top * 1.25, 0.05))
  left.legend(fontsize=8, loc="upper left")

  bars = [(label, common.COLORS[color],
           [product.get(f"{prefix}_liked_recall_at_10"),
            product.get(f"{prefix}_liked_ndcg_at_10")])
          for label, color, prefix in (
              ("most popular", "popularity", "popularity"),
              ("NCF alone", "ncf", "ncf_rerank"),
              ("retrieval", "product", "retrieval"),
              ("retrieval + NCF rerank", "rerank", "rerank"))
          if product.get(f"{prefix}_liked_recall_at_10") is not None]
  top = _grouped_bars(right, ["recall@10", "NDCG@10"], bars)
  right.set_ylabel("recall@10, NDCG@10 (fraction)")
  right.set_title("Liked held-out movies (rating > 3) in the top 10")
  right.set_ylim(0, max(top * 1.25, 0.05))
  if bars:
    right.legend(fontsize=8, loc="upper left", ncols=2)
  for ax in (left, right):
    ax.grid(axis="y", alpha=0.3)
  dataset = doc.get("dataset") or "dataset not recorded"
  fig.suptitle(f"Top-k lists per user on {dataset}" +
               (" (SYNTHETIC data)" if common.is_synthetic(dataset) else ""))
  fig.savefig(path, dpi=110)
  return True
