r"""Results tables and plots, generated from the benchmark JSON.

  python -m ncf_tfrs.report \
      --inputs bench_train.json,bench_serving.json,bench_data.json \
      --output_dir docs/results --readme README.md

The benchmarks (`ncf_tfrs.bench`, `bench_train`, `bench_serving`) each write a
JSON file of what they measured, with the machine and the command that ran
them. This module turns whichever of those files exist into Markdown tables
and PNG plots, so that no figure in the README is typed by hand:

- `<output_dir>/results.md`: every table, each labelled with the hardware,
  the data (flagged SYNTHETIC where it is generated, not real MovieLens) and
  the command that produced it, the target checks (met / NOT met), and the
  plots;
- `<output_dir>/*.png`: training curves (held-out AUC and log loss against
  training seconds, product vs the notebook's recipe), recall@K (popularity
  vs retrieval vs retrieval + NCF rerank), ScaNN recall@100 against queries/s
  beside exact search, and serving latency;
- with `--readme`, the same report replaces the README's block between
  `<!-- results:begin -->` and `<!-- results:end -->`; rerunning on the same
  inputs leaves the README unchanged.

Missing inputs or sections are reported in the output, not fatal: the report
renders what exists. Plots use matplotlib's Agg canvas directly (no display,
no pyplot state).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import sys
from typing import Any, Callable, Optional, Sequence

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

BEGIN_MARKER = "<!-- results:begin -->"
END_MARKER = "<!-- results:end -->"
SUITES = ("train", "serving", "data")
DEFAULT_FILES = {"train": "bench_train.json", "serving": "bench_serving.json",
                 "data": "bench_data.json"}

TRAINING_CURVES_PNG = "training_curves.png"
RECALL_PNG = "recall_at_k.png"
SCANN_PNG = "scann_vs_exact.png"
LATENCY_PNG = "serving_latency.png"

_COLORS = {"product": "tab:blue", "notebook": "tab:orange",
           "tutorial": "tab:green", "popularity": "tab:gray",
           "ncf": "tab:purple", "rerank": "tab:red"}


class ReportError(Exception):
  """An input or the README cannot be used; the message says which and why."""


@dataclasses.dataclass(frozen=True)
class ReportFiles:
  """What `build_report` wrote.

  Attributes:
    markdown: Path of results.md.
    images: Paths of the PNG plots written (only those with data).
    readme: The README whose results block was replaced, if any.
    missing: What the report could not show, one line each.
  """
  markdown: str
  images: tuple[str, ...]
  readme: Optional[str]
  missing: tuple[str, ...]


# ----------------------------------------------------------------- inputs --


def _suite_of(doc: dict[str, Any], path: str) -> str:
  """The suite of one bench JSON: its "suite" key, else its shape."""
  suite = doc.get("suite")
  if suite is None:
    if "stages" in doc:
      suite = "train"
    elif "ann" in doc or "end_to_end" in doc:
      suite = "serving"
    elif "results" in doc:
      suite = "data"
  if suite not in SUITES:
    raise ReportError(f"{path}: not a benchmark result of a known suite "
                      f"({', '.join(SUITES)}); suite={suite!r}")
  return suite


def load_inputs(paths: Sequence[str]
                ) -> tuple[dict[str, dict[str, Any]], list[str]]:
  """Reads the bench JSON files that exist, keyed by suite.

  Args:
    paths: Bench JSON paths, any subset of the suites, any order.

  Returns:
    ({suite: document}, notes on paths that do not exist).

  Raises:
    ReportError: a file is not JSON, not a bench result, or a second file of
      the same suite; or none of `paths` exists.
  """
  docs, sources, notes = {}, {}, []
  for path in paths:
    if not os.path.exists(path):
      notes.append(f"{os.path.basename(path)}: not found")
      continue
    try:
      with open(path, encoding="utf-8") as f:
        doc = json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
      raise ReportError(f"{path}: not valid JSON ({e})") from e
    if not isinstance(doc, dict):
      raise ReportError(f"{path}: expected a JSON object")
    suite = _suite_of(doc, path)
    if suite in docs:
      raise ReportError(f"{path} and {sources[suite]} are both {suite} "
                        "results; give one file per suite")
    docs[suite], sources[suite] = doc, path
  if not docs:
    raise ReportError("none of the inputs exists: " + ", ".join(paths))
  return docs, notes


# ------------------------------------------------------------- formatting --


def _get(doc: Any, *keys: str) -> Any:
  """doc[k1][k2]..., or None where any level is missing or null."""
  for key in keys:
    if not isinstance(doc, dict) or doc.get(key) is None:
      return None
    doc = doc[key]
  return doc


def _num(value: Any, fmt: str = "{:,.3g}") -> str:
  if value is None or (isinstance(value, float) and math.isnan(value)):
    return "–"
  return fmt.format(value)


def _metric(value: Any) -> str:
  return _num(value, "{:.4f}")


def _seconds(value: Any) -> str:
  return _num(value, "{:,.1f}")


def _rate(value: Any) -> str:
  return _num(value, "{:,.0f}")


def _gib(value: Any) -> str:
  return _num(value, "{:.2f}")


def _times(value: Any) -> str:
  return _num(value, "{:.1f}×")


def _table(header: Sequence[str], rows: Sequence[Sequence[str]],
           right_from: int = 1) -> str:
  """A Markdown pipe table; columns from `right_from` on are right-aligned."""
  align = ["---" if i < right_from else "---:" for i in range(len(header))]
  lines = ["| " + " | ".join(header) + " |", "|" + "|".join(align) + "|"]
  lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
  return "\n".join(lines)


def is_synthetic(dataset: str) -> bool:
  """Whether a dataset name is generated data (synthetic-*), not MovieLens."""
  return str(dataset).startswith("synthetic")


def dataset_label(dataset: Optional[str]) -> str:
  if not dataset:
    return "not recorded in the JSON"
  if is_synthetic(dataset):
    return (f"`{dataset}` (**SYNTHETIC**: generated MovieLens-shaped ratings "
            "with a planted model, not real MovieLens)")
  return f"`{dataset}` (real MovieLens)"


def hardware_label(machine: Optional[dict[str, Any]]) -> str:
  """CPUs, processor and platform; TF and Python versions where recorded."""
  if not machine:
    return "not recorded in the JSON"
  parts = [f"{machine['cpus']} CPUs" if machine.get("cpus") else
           "CPU count not recorded",
           machine.get("processor") or "processor not recorded",
           machine.get("platform") or "platform not recorded"]
  versions = [f"{name} {machine[key]}" for key, name in
              (("python", "Python"), ("tensorflow", "TensorFlow"))
              if machine.get(key)]
  return ", ".join(parts) + ("; " + ", ".join(versions) if versions else "")


def _labels(doc: dict[str, Any], data: str, suite: str) -> str:
  """The three labels every table carries: hardware, data, command."""
  command = doc.get("command")
  return "\n".join([
      f"- Hardware: {hardware_label(doc.get('machine'))}",
      f"- Data: {data}",
      "- Command: " + (f"`{command}`" if command else
                       f"not recorded in the {suite} JSON"),
  ])


def _check(name: str, measured: Optional[float], required: Optional[float],
           passed: Callable[[float, float], bool], show: Callable[[Any], str],
           relation: str, why_missing: str = "") -> list[str]:
  """One target-check row: target, measured, required, status.

  `why_missing` explains a missing figure; without it, a missing requirement
  means the JSON has no such target, and a missing measurement "not measured".
  """
  if measured is None or required is None:
    why = why_missing or ("no target in the JSON" if required is None
                          else "not measured")
    return [name, show(measured), f"{relation} {show(required)}"
            if required is not None else "–", f"n/a ({why})"]
  status = "met" if passed(measured, required) else "**NOT met**"
  return [name, show(measured), f"{relation} {show(required)}", status]


def _image(path: str, alt: str, relative_to: str) -> str:
  return f"![{alt}]({os.path.relpath(path, relative_to)})"


# ---------------------------------------------------------- train suite --


_STAGE_TITLES = {"notebook": "notebook recipe (baseline)",
                 "product": "product (joint retrieval + NCF)",
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

  for key, name in (("joint", "joint training ratings/s"),
                    ("ranking_only", "ranking-only training ratings/s")):
    measured = _get(doc, "throughput", key, "median")
    rows.append(_check(name, measured,
                       targets.get(f"{key}_ratings_per_s"), ge, _rate, "≥",
                       "" if doc.get("throughput") else
                       "no throughput section"))
  rows.append(_check("product peak RSS (GiB)", _get(product, "peak_rss_gib"),
                     targets.get("peak_rss_gib"), le, _gib, "≤",
                     "" if product else "no product stage"))

  def gain(metric, target_key, title):
    if nb.get(metric) is None or pr.get(metric) is None:
      return _check(title, None, targets.get(target_key), ge, _metric, "≥",
                    "needs product and notebook stages")
    return _check(title, pr[metric] - nb[metric], targets.get(target_key), ge,
                  lambda v: _num(v, "{:+.4f}"), "≥")

  rows.append(gain("accuracy", "accuracy_gain",
                   "accuracy gain over notebook"))
  rows.append(gain("auc", "auc_gain", "AUC gain over notebook"))

  oracle_auc = _get(doc, "oracle", "auc")
  halfway = (nb["auc"] + (oracle_auc - nb["auc"]) / 2
             if oracle_auc is not None and nb.get("auc") is not None else None)
  rows.append(_check(
      "product AUC halfway from notebook to oracle", pr.get("auc"), halfway,
      ge, _metric, "≥",
      "no oracle: real data" if doc.get("oracle") is None and "oracle" in doc
      else "needs oracle, product and notebook"))

  fraction = targets.get("wall_time_fraction")
  nb_wall = _get(notebook, "wall_seconds")
  rows.append(_check(
      f"product wall time (s) vs notebook's × {_num(fraction)}",
      _get(product, "wall_seconds"),
      nb_wall * fraction if nb_wall is not None and fraction is not None
      else None, le, _seconds, "≤",
      "" if nb_wall is not None and _get(product, "wall_seconds") is not None
      else "needs product and notebook stages"))

  recall_gain = targets.get("recall_at_100_gain")
  tutorial_recall = _get(tutorial, "lists", "retrieval_recall_at_100")
  rows.append(_check(
      "retrieval recall@100 vs tutorial's × "
      f"{_num(1 + recall_gain) if recall_gain is not None else '–'}",
      _get(product, "lists", "retrieval_recall_at_100"),
      tutorial_recall * (1 + recall_gain)
      if tutorial_recall is not None and recall_gain is not None else None,
      ge, _metric, "≥",
      "" if tutorial_recall is not None and _get(
          product, "lists", "retrieval_recall_at_100") is not None
      else "needs product and tutorial stages"))
  return rows


def render_train(doc: dict[str, Any], images: dict[str, str],
                 relative_to: str, heading: str) -> tuple[str, list[str]]:
  """The training section and what it lacks."""
  missing = []
  stages = doc.get("stages") or {}
  parts = [f"{heading} Training: product vs the notebook's recipe", "",
           _labels(doc, dataset_label(doc.get("dataset")) +
                   (f", {doc['split']} split" if doc.get("split") else ""),
                   "train"), ""]
  for name in ("notebook", "product", "tutorial"):
    if name not in stages:
      missing.append(f"training: no {name} stage in the train results")

  rows = []
  for name in ("notebook", "product", "tutorial"):
    stage = stages.get(name)
    if not stage:
      continue
    ranking = ({} if name == "tutorial" else _stage_ranking(name, stage))
    title = _STAGE_TITLES[name]
    if stage.get("flagfile"):
      title += f" `{stage['flagfile']}`"
    rows.append([
        title, _rate(stage.get("train_ratings")), _num(stage.get("epochs_run")),
        _seconds(stage.get("train_seconds")),
        _seconds(stage.get("wall_seconds")),
        _rate(stage.get("train_ratings_per_s")),
        _gib(stage.get("peak_rss_gib")), _metric(ranking.get("auc")),
        _metric(ranking.get("accuracy")), _metric(ranking.get("log_loss")),
        _metric(ranking.get("mse")), _metric(ranking.get("mae")),
        _metric(_get(stage, "lists", "retrieval_recall_at_100"))])
  oracle = doc.get("oracle")
  if oracle:
    rows.append(["oracle (the generator's planted model)"] + ["–"] * 6 + [
        _metric(oracle.get("auc")), _metric(oracle.get("accuracy")),
        _metric(oracle.get("log_loss")), "–", "–", "–"])
  if rows:
    parts += ["Held-out ratings (ranking) and per-user top 100 over the "
              "catalog (retrieval):", "",
              _table(["recipe", "train ratings", "epochs", "train s",
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
      ("retrieval (tutorial)", tutorial, "retrieval", True)):
    lists = _get(stage, "lists")
    if not lists:
      continue
    row = [title] + [_metric(lists.get(f"retrieval_recall_at_{k}"))
                     if all_k else "–" for k in (10, 50, 100)]
    row += [_metric(lists.get(f"{prefix}_liked_recall_at_10")),
            _metric(lists.get(f"{prefix}_liked_ndcg_at_10"))]
    if any(cell != "–" for cell in row[1:]):
      list_rows.append(row)
  if list_rows:
    users = _get(product, "lists", "eval_users")
    liked = _get(product, "lists", "liked_eval_users")
    parts += [f"Top-k lists per user ({_rate(users)} users; liked: "
              f"{_rate(liked)} users with a held-out movie rated > 3):", "",
              _table(["list", "recall@10", "recall@50", "recall@100",
                      "liked recall@10", "liked NDCG@10"], list_rows), ""]
  else:
    missing.append("training: no top-k list metrics")

  throughput = doc.get("throughput")
  if throughput:
    t_rows = []
    for key, title, show in (
        ("joint", "joint (retrieval + NCF), ratings/s", _rate),
        ("ranking_only", "ranking only, ratings/s", _rate),
        ("notebook", "notebook recipe, ratings/s", _rate),
        ("joint_vs_notebook", "joint vs notebook", _times),
        ("ranking_only_vs_notebook", "ranking only vs notebook", _times)):
      if isinstance(throughput.get(key), dict):
        t = throughput[key]
        t_rows.append([title, show(t.get("median")), show(t.get("min")),
                       show(t.get("max"))])
    parts += [f"Training throughput, {_num(throughput.get('repeats'))} "
              f"windows of {_num(throughput.get('window_steps'))} steps:", "",
              _table(["measurement", "median", "min", "max"], t_rows), ""]
  else:
    missing.append("training: no throughput section")

  parts += ["Targets:", "",
            _table(["target", "measured", "required", "status"],
                   train_checks(doc)), ""]
  for key, alt in ((TRAINING_CURVES_PNG, "held-out AUC and log loss vs "
                    "training seconds"),
                   (RECALL_PNG, "recall@K: popularity, retrieval, rerank")):
    if key in images:
      parts += [_image(images[key], alt, relative_to), ""]
  return "\n".join(parts), missing


def plot_training_curves(doc: dict[str, Any], path: str) -> bool:
  """AUC and log loss vs training seconds, product vs notebook; False if no
  curve exists."""
  stages = doc.get("stages") or {}
  series = {name: stages[name] for name in ("notebook", "product")
            if stages.get(name) and stages[name].get("curve")}
  if not series:
    return False
  fig = Figure(figsize=(11, 4.4), layout="constrained")
  FigureCanvasAgg(fig)
  axes = fig.subplots(1, 2)
  for ax, metric, title in ((axes[0], "auc", "held-out AUC"),
                            (axes[1], "log_loss", "held-out log loss")):
    for name, stage in series.items():
      xs, ys = _curve_series(name, stage, metric)
      ax.plot(xs, ys, marker="o", markersize=3, color=_COLORS[name],
              label=_STAGE_TITLES[name])
    oracle = _get(doc, "oracle", metric)
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
               (" (SYNTHETIC data)" if is_synthetic(dataset) else ""))
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
  product = _get(stages, "product", "lists") or {}
  tutorial = _get(stages, "tutorial", "lists") or {}
  if not product and not tutorial:
    return False
  fig = Figure(figsize=(11, 4.4), layout="constrained")
  FigureCanvasAgg(fig)
  left, right = fig.subplots(1, 2)

  bars = [(label, _COLORS[color],
           [lists.get(f"retrieval_recall_at_{k}") for k in (10, 50, 100)])
          for label, color, lists in (
              ("TFRS tutorial retrieval", "tutorial", tutorial),
              ("product retrieval", "product", product)) if lists]
  top = _grouped_bars(left, ["K = 10", "K = 50", "K = 100"], bars)
  left.set_ylabel("recall@K (fraction of held-out movies)")
  left.set_title("Retrieval: all held-out movies in the top K")
  left.set_ylim(0, max(top * 1.25, 0.05))
  left.legend(fontsize=8, loc="upper left")

  bars = [(label, _COLORS[color],
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
               (" (SYNTHETIC data)" if is_synthetic(dataset) else ""))
  fig.savefig(path, dpi=110)
  return True


# -------------------------------------------------------- serving suite --


def _catalog(case: dict[str, Any]) -> str:
  return f"{case.get('num_movies', 0):,} movies, {case.get('kind', '?')}"


def serving_checks(doc: dict[str, Any]) -> list[list[str]]:
  """The serving targets as rows. Recall applies to clustered catalogs (the
  shape trained embeddings have); the random catalog is the reported worst
  case. A speed-up is met only if both single and batched queries meet it."""
  targets = doc.get("targets") or {}
  ge = lambda m, r: m >= r  # pylint: disable=unnecessary-lambda-assignment
  le = lambda m, r: m <= r  # pylint: disable=unnecessary-lambda-assignment
  rows = []
  for case in doc.get("ann") or []:
    if case.get("kind") == "random":
      continue
    rows.append(_check(f"recall@100, {_catalog(case)}",
                       case.get("recall_at_100"),
                       targets.get("recall_at_100"), ge, _metric, "≥"))
    key = {84_432: "speedup_84k", 1_000_000: "speedup_1m"}.get(
        case.get("num_movies"))
    speedups = [case.get("single_speedup"), case.get("batched_speedup")]
    if key and None not in speedups:
      rows.append(_check(f"ScaNN speed-up over exact (lower of single and "
                         f"batched), "
                         f"{_catalog(case)}", min(speedups),
                         targets.get(key), ge, _times, "≥"))
  e2e = doc.get("end_to_end") or {}
  for key, title, show, passed, relation in (
      ("single_p50_ms", "recommend p50 latency (ms)", _metric_ms, le, "≤"),
      ("single_p99_ms", "recommend p99 latency (ms)", _metric_ms, le, "≤"),
      ("batched_users_per_s", "batched recommend users/s", _rate, ge, "≥")):
    rows.append(_check(title, e2e.get(key), targets.get(key), passed, show,
                       relation, "" if e2e else "no end-to-end section"))
  return rows


def _metric_ms(value: Any) -> str:
  return _num(value, "{:.2f}")


def render_serving(doc: dict[str, Any], images: dict[str, str],
                   relative_to: str, heading: str) -> tuple[str, list[str]]:
  """The serving section and what it lacks."""
  missing = []
  e2e = doc.get("end_to_end")
  data = ("**SYNTHETIC** catalogs of random dimension-64 embeddings "
          "(Gaussian-mixture 'clustered', and isotropic 'random' as the worst "
          "case)")
  if e2e:
    model = e2e.get("model") or {}
    shape = (f" (retrieval dim {model.get('retrieval_embedding_dim')}, NCF dim "
             f"{model.get('ncf_embedding_dim')}, MLP "
             f"{'-'.join(str(u) for u in model.get('ncf_mlp_layers', []))})"
             if model else "")
    data += (f"; end to end, an export of a {e2e.get('num_users', 0):,}-user "
             f"× {e2e.get('num_movies', 0):,}-movie model{shape} with random "
             "weights (SYNTHETIC)")
  parts = [f"{heading} Serving: ScaNN vs exact search, end-to-end recommend",
           "", _labels(doc, data, "serving"), ""]
  ann = doc.get("ann") or []
  if ann:
    rows = [[_rate(c.get("num_movies")), c.get("kind", "–"),
             _seconds(c.get("build_s")), _metric(c.get("recall_at_100")),
             _rate(c.get("scann_single_qps")),
             _rate(c.get("exact_single_qps")),
             _times(c.get("single_speedup")),
             _rate(c.get("scann_batched_qps")),
             _rate(c.get("exact_batched_qps")),
             _times(c.get("batched_speedup"))] for c in ann]
    parts += [f"Top 100 by ScaNN against exact brute force (numpy), medians "
              f"of {_num(doc.get('repeats'))} repeats; recall@100 against "
              "the exact answer:", "",
              _table(["movies", "catalog", "index build s", "recall@100",
                      "ScaNN single q/s", "exact single q/s", "speed-up",
                      "ScaNN batched q/s", "exact batched q/s", "speed-up"],
                     rows, right_from=2), ""]
  else:
    missing.append("serving: no ScaNN vs exact results")
  if e2e:
    parts += [
        f"`Recommender` in process: ScaNN top "
        f"{e2e.get('num_candidates', '–')} → NCF rerank → top "
        f"{e2e.get('k', '–')}; latency over {_rate(e2e.get('requests'))} "
        f"single-user requests after warm-up, throughput in batches of "
        f"{_rate(e2e.get('batch_size'))} users:", "",
        _table(["p50 ms", "p90 ms", "p99 ms", "batched users/s",
                "export s"],
               [[_metric_ms(e2e.get("single_p50_ms")),
                 _metric_ms(e2e.get("single_p90_ms")),
                 _metric_ms(e2e.get("single_p99_ms")),
                 _rate(e2e.get("batched_users_per_s")),
                 _seconds(e2e.get("export_s"))]], right_from=0), ""]
  else:
    missing.append("serving: no end-to-end results")
  parts += ["Targets:", "",
            _table(["target", "measured", "required", "status"],
                   serving_checks(doc)), ""]
  for key, alt in ((SCANN_PNG, "ScaNN recall@100 vs queries/s beside exact "
                    "search"), (LATENCY_PNG, "recommend latency")):
    if key in images:
      parts += [_image(images[key], alt, relative_to), ""]
  return "\n".join(parts), missing


def plot_scann(doc: dict[str, Any], path: str) -> bool:
  """Recall@100 vs queries/s (log), ScaNN and exact, single and batched, one
  colour per catalog; False if there is no ANN result."""
  ann = doc.get("ann") or []
  if not ann:
    return False
  fig = Figure(figsize=(10, 5.2), layout="constrained")
  FigureCanvasAgg(fig)
  ax = fig.subplots()
  colors = ["tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple",
            "tab:brown"]
  modes = (("scann_single_qps", "recall", "o", "ScaNN, single queries"),
           ("scann_batched_qps", "recall", "s", "ScaNN, batched"),
           ("exact_single_qps", "exact", "^", "exact, single queries"),
           ("exact_batched_qps", "exact", "v", "exact, batched"))
  for i, case in enumerate(ann):
    # Exact search of equal-sized catalogs lands on one spot: later catalogs
    # get smaller markers, so overlapping points show as concentric rings.
    size = max(150 - 45 * i, 30)
    for key, which, marker, _ in modes:
      qps = case.get(key)
      recall = 1.0 if which == "exact" else case.get("recall_at_100")
      if qps is not None and recall is not None:
        ax.scatter([qps], [recall], marker=marker, s=size,
                   color=colors[i % len(colors)], edgecolors="black",
                   linewidths=0.6, zorder=3 + i)
  target = _get(doc, "targets", "recall_at_100")
  if target is not None:
    ax.axhline(target, color="gray", linestyle="--", linewidth=1)
  ax.set_xscale("log")
  ax.set_xlabel("queries per second (log scale)")
  ax.set_ylabel("recall@100 against exact top 100")
  recalls = [c["recall_at_100"] for c in ann
             if c.get("recall_at_100") is not None]
  ax.set_ylim(min(recalls + [target or 1.0]) - 0.05, 1.03)
  ax.grid(alpha=0.3, which="both")
  fig.legend(
      [Line2D([], [], color=colors[i % len(colors)], marker="o",
              linestyle="", markeredgecolor="black") for i in range(len(ann))],
      [_catalog(c) for c in ann], title="catalog (dim 64)", fontsize=8,
      title_fontsize=8, loc="outside right upper")
  handles = [Line2D([], [], color="lightgray", marker=m, linestyle="",
                    markeredgecolor="black") for _, _, m, _ in modes]
  labels = [label for *_, label in modes]
  if target is not None:
    handles.append(Line2D([], [], color="gray", linestyle="--"))
    labels.append(f"recall target {target}")
  fig.legend(handles, labels, fontsize=8, loc="outside right lower",
             title="search (exact: recall 1)", title_fontsize=8)
  ax.set_title("ScaNN vs exact top-100 search (SYNTHETIC catalogs, "
               f"{_num(doc.get('repeats'))} repeats)")
  fig.savefig(path, dpi=110)
  return True


def plot_latency(doc: dict[str, Any], path: str) -> bool:
  """Recommend latency (histogram of single requests if recorded, else
  p50/p90/p99 bars) beside batched throughput, with the targets; False if
  there is no end-to-end result."""
  e2e = doc.get("end_to_end")
  if not e2e:
    return False
  targets = doc.get("targets") or {}
  fig = Figure(figsize=(11, 4.4), layout="constrained")
  FigureCanvasAgg(fig)
  left, right = fig.subplots(1, 2, width_ratios=[3, 1])
  percentiles = [(p, e2e.get(f"single_p{p}_ms")) for p in (50, 90, 99)]
  target_lines = [(p, targets.get(f"single_p{p}_ms")) for p in (50, 99)
                  if targets.get(f"single_p{p}_ms") is not None]
  latencies = e2e.get("single_latencies_ms")
  if latencies:
    # A few slow outliers would stretch the axis and squeeze the bulk into a
    # corner: the axis stops past p99 and the targets, and says what it hides.
    marks = [v for _, v in percentiles + target_lines if v is not None]
    limit = max(marks + [min(latencies)]) * 1.25
    shown = [v for v in latencies if v <= limit]
    hidden = len(latencies) - len(shown)
    label = f"{len(latencies):,} requests"
    if hidden:
      label += (f" ({hidden:,} slower than {limit:.1f} ms, up to "
                f"{max(latencies):.1f} ms, off the axis)")
    counts, _, _ = left.hist(shown, bins=50, range=(0, limit),
                             color="tab:blue", alpha=0.7, label=label)
    left.set_xlim(0, limit)
    left.set_ylim(0, max(counts) * 1.5)  # Room for the legend above.
    for (p, value), style in zip(percentiles, (":", "-.", "--")):
      if value is not None:
        left.axvline(value, color="black", linestyle=style, linewidth=1,
                     label=f"p{p} {value:.2f} ms")
    for p, value in target_lines:
      left.axvline(value, color="tab:red", linewidth=1.5,
                   linestyle="--" if p == 50 else "-",
                   label=f"p{p} target {value:g} ms")
    left.set_xlabel("single-request latency (ms)")
    left.set_ylabel("requests")
  else:
    names = [f"p{p}" for p, v in percentiles if v is not None]
    values = [v for _, v in percentiles if v is not None]
    bars = left.bar(names, values, color="tab:blue", width=0.5,
                    label="measured")
    for bar, value in zip(bars, values):
      left.annotate(f"{value:.2f} ms", (bar.get_x() + bar.get_width() / 2,
                                        bar.get_height()),
                    xytext=(0, 2), textcoords="offset points", ha="center",
                    va="bottom", fontsize=8)
    for p, value in target_lines:
      left.axhline(value, color="tab:red", linewidth=1.5,
                   linestyle="--" if p == 50 else "-",
                   label=f"p{p} target {value:g} ms")
    top = max(values + [v for _, v in target_lines] + [1.0])
    left.set_ylim(0, top * 1.2)
    left.set_xlabel("percentile of single-request latency")
    left.set_ylabel("latency (ms)")
  left.set_title(f"Single-user recommend latency ({_rate(e2e.get('requests'))}"
                 " requests after warm-up)")
  left.grid(alpha=0.3)
  left.legend(fontsize=8)

  rate = e2e.get("batched_users_per_s")
  if rate is not None:
    bars = right.bar(["batched"], [rate], color="tab:green", width=0.5)
    right.annotate(f"{rate:,.0f}", (bars[0].get_x() + bars[0].get_width() / 2,
                                    rate), xytext=(0, 2),
                   textcoords="offset points", ha="center", va="bottom",
                   fontsize=8)
    target = targets.get("batched_users_per_s")
    if target is not None:
      right.axhline(target, color="tab:red", linewidth=1.5,
                    label=f"target {target:,}")
      right.legend(fontsize=8, loc="lower right")
    right.set_ylim(0, max(rate, target or 0) * 1.25)
  right.set_ylabel("users per second")
  right.set_title(f"Batches of {_rate(e2e.get('batch_size'))} users")
  right.grid(axis="y", alpha=0.3)
  fig.suptitle(
      f"Recommend in process: {e2e.get('num_users', 0):,} users × "
      f"{e2e.get('num_movies', 0):,} movies, ScaNN top "
      f"{e2e.get('num_candidates', '?')} → NCF rerank → top "
      f"{e2e.get('k', '?')} (SYNTHETIC model)")
  fig.savefig(path, dpi=110)
  return True


# ----------------------------------------------------------- data suite --


_DATA_METRICS = (
    ("ratings", "ratings", _rate),
    ("prepare_s", "prepare (generate/parse + write TFDS), s", _seconds),
    ("prepare_peak_rss_gib", "prepare peak RSS, GiB", _gib),
    ("load_s", "load (TFDS → columns), s", _seconds),
    ("split_s", "split, s", _seconds),
    ("epoch_s", "one pass of training batches, s", _seconds),
    ("epoch_ratings_per_s", "training batches, ratings/s", _rate),
    ("full_pass_ratings_per_s", "load + split + pass, ratings/s", _rate),
    ("pipeline_peak_rss_gib", "pipeline peak RSS, GiB", _gib),
    ("notebook_ratings_per_s", "notebook input pipeline, ratings/s", _rate),
    ("epoch_speedup_vs_notebook", "speed-up over the notebook's pipeline",
     _times),
)


def render_data(doc: dict[str, Any], heading: str) -> tuple[str, list[str]]:
  """The data-pipeline section: medians (min–max), one column per config."""
  results = doc.get("results") or {}
  configs = list(results)
  data = ", ".join(
      f"`{c}`" + (" (**SYNTHETIC**)" if is_synthetic(c) else
                  " (real MovieLens)") for c in configs) or "none"
  parts = [f"{heading} Data pipeline: MovieLens → training batches", "",
           _labels(doc, data, "data"), ""]
  if not configs:
    return "\n".join(parts), ["data: no results in the data suite"]
  rows = []
  for key, title, show in _DATA_METRICS:
    cells = []
    for config in configs:
      s = _get(results[config], "summary", key)
      if s is None:
        cells.append("–")
      elif s.get("min") == s.get("max") or key == "ratings":
        cells.append(show(s.get("median")))
      else:
        cells.append(f"{show(s.get('median'))} ({show(s.get('min'))}–"
                     f"{show(s.get('max'))})")
    if any(c != "–" for c in cells):
      rows.append([title] + cells)
  parts += [f"Medians (min–max) over {_num(doc.get('repeats'))} repeats, "
            f"batch size {_rate(doc.get('batch_size'))}:", "",
            _table(["measurement"] + [
                f"{c} (SYNTHETIC)" if is_synthetic(c) else c
                for c in configs], rows), ""]
  return "\n".join(parts), []


# ---------------------------------------------------------------- report --


def render(docs: dict[str, dict[str, Any]], images: dict[str, str],
           relative_to: str, notes: Sequence[str] = (), level: int = 1,
           command: str = "python -m ncf_tfrs.report") -> tuple[str, list[str]]:
  """The whole report as Markdown, and what it could not show.

  Args:
    docs: {suite: bench JSON document}, from `load_inputs`.
    images: {png file name: path} of the plots written.
    relative_to: Folder the Markdown lives in (image links are relative).
    notes: Input problems to list (missing files).
    level: Heading level of the report's title; sections go one deeper.
    command: The report command, quoted in the header.
  """
  heading = "#" * (level + 1)
  notes = list(notes)
  missing, sections = [], []
  for suite in SUITES:
    if suite not in docs:
      # Fold "bench_<suite>.json: not found" into the suite's own line.
      why = [n for n in notes if n.startswith(DEFAULT_FILES[suite] + ":")]
      notes = [n for n in notes if n not in why]
      missing.append(f"{suite}: no results" +
                     (f" ({why[0]})" if why else " given"))
      continue
    if suite == "train":
      text, lacks = render_train(docs[suite], images, relative_to, heading)
    elif suite == "serving":
      text, lacks = render_serving(docs[suite], images, relative_to, heading)
    else:
      text, lacks = render_data(docs[suite], heading)
    sections.append(text)
    missing += lacks
  missing = notes + missing
  header = ["#" * level + " Benchmark results", "",
            f"Generated by `{command}` from the benchmarks' JSON; do not edit "
            "by hand. Every figure is a measurement on the hardware named "
            "under its table.", ""]
  if missing:
    header += ["Not in this report:", ""] + [f"- {m}" for m in missing] + [""]
  return "\n".join(header + sections).rstrip() + "\n", missing


def replace_block(text: str, block: str, path: str = "README") -> str:
  """`text` with everything between the results markers replaced by `block`.

  Raises:
    ReportError: the markers are missing, repeated or out of order.
  """
  begin, end = text.count(BEGIN_MARKER), text.count(END_MARKER)
  if begin != 1 or end != 1 or text.index(BEGIN_MARKER) > text.index(
      END_MARKER):
    raise ReportError(
        f"{path} needs exactly one '{BEGIN_MARKER}' followed by one "
        f"'{END_MARKER}' line to mark where the results go (found {begin} "
        f"and {end}); add them, e.g. under a '## Results' heading")
  head = text[:text.index(BEGIN_MARKER) + len(BEGIN_MARKER)]
  tail = text[text.index(END_MARKER):]
  return f"{head}\n{block.strip()}\n{tail}"


def build_report(inputs: Sequence[str], output_dir: str,
                 readme: Optional[str] = None,
                 command: str = "python -m ncf_tfrs.report") -> ReportFiles:
  """Writes results.md and the plots; replaces the README's results block.

  The README's markers are checked before anything is written, so a README
  without them leaves no half-made report behind.

  Args:
    inputs: Bench JSON paths; those that do not exist are listed as missing.
    output_dir: Folder for results.md and the PNGs (created if missing).
    readme: A Markdown file with the results markers, or None.
    command: The report command, quoted in the generated header.

  Raises:
    ReportError: no usable input, or the README lacks its markers.
  """
  docs, notes = load_inputs(inputs)
  readme_text = None
  if readme:
    try:
      with open(readme, encoding="utf-8") as f:
        readme_text = f.read()
    except FileNotFoundError as e:
      raise ReportError(f"README {readme} not found") from e
    replace_block(readme_text, "", readme)  # Checks the markers.

  os.makedirs(output_dir, exist_ok=True)
  images = {}
  for suite, name, plot in (("train", TRAINING_CURVES_PNG,
                             plot_training_curves),
                            ("train", RECALL_PNG, plot_recall),
                            ("serving", SCANN_PNG, plot_scann),
                            ("serving", LATENCY_PNG, plot_latency)):
    path = os.path.join(output_dir, name)
    if suite in docs and plot(docs[suite], path):
      images[name] = path

  markdown, missing = render(docs, images, output_dir, notes, level=1,
                             command=command)
  markdown_path = os.path.join(output_dir, "results.md")
  with open(markdown_path, "w", encoding="utf-8") as f:
    f.write(markdown)
  if readme_text is not None:
    # The same report one heading level down, image links relative to the
    # README's folder.
    block, _ = render(docs, images, os.path.dirname(os.path.abspath(readme)),
                      notes, level=3, command=command)
    updated = replace_block(readme_text, block, readme)
    if updated != readme_text:
      with open(readme, "w", encoding="utf-8") as f:
        f.write(updated)
  return ReportFiles(markdown_path, tuple(images.values()), readme,
                     tuple(missing))


def _define_flags():
  """The command's flags; defined only when run as a command, so importing
  the library registers nothing."""
  from absl import flags  # pylint: disable=g-import-not-at-top
  return (
      flags.DEFINE_list(
          "inputs", list(DEFAULT_FILES.values()),
          "Bench JSON files (any of the train, serving and data suites); "
          "missing ones are listed in the report."),
      flags.DEFINE_string("output_dir", "docs/results",
                          "Where results.md and the PNGs go."),
      flags.DEFINE_string(
          "readme", None, "A Markdown file whose block between "
          f"'{BEGIN_MARKER}' and '{END_MARKER}' is replaced by the results."),
  )


def main() -> None:
  """The command: flags -> `build_report`; a ReportError exits with status 1
  and its message, without a traceback."""
  from absl import app  # pylint: disable=g-import-not-at-top
  inputs, output_dir, readme = _define_flags()

  def run(argv: Sequence[str]) -> None:
    if len(argv) > 1:
      raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    command = " ".join(["python -m ncf_tfrs.report"] + sys.argv[1:])
    try:
      files = build_report(inputs.value, output_dir.value,
                           readme.value or None, command)
    except ReportError as e:
      sys.exit(f"report: {e}")
    print(f"wrote {files.markdown}")
    for image in files.images:
      print(f"wrote {image}")
    if files.readme:
      print(f"updated the results block of {files.readme}")
    for line in files.missing:
      print(f"not in the report: {line}")

  app.run(run)


if __name__ == "__main__":
  main()
