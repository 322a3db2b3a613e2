"""The serving suite's section: ScaNN vs exact, and recommend latency."""

from __future__ import annotations

from typing import Any

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from ncf_tfrs.bench.report import common


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
    rows.append(common.check(f"recall@100, {_catalog(case)}",
                       case.get("recall_at_100"),
                       targets.get("recall_at_100"), ge, common.metric, "≥"))
    key = {84_432: "speedup_84k", 1_000_000: "speedup_1m"}.get(
        case.get("num_movies"))
    speedups = [case.get("single_speedup"), case.get("batched_speedup")]
    if key and None not in speedups:
      rows.append(common.check(f"ScaNN speed-up over exact (lower of single and "
                         f"batched), "
                         f"{_catalog(case)}", min(speedups),
                         targets.get(key), ge, common.times, "≥"))
  e2e = doc.get("end_to_end") or {}
  for key, title, show, passed, relation in (
      ("single_p50_ms", "recommend p50 latency (ms)", _metric_ms, le, "≤"),
      ("single_p99_ms", "recommend p99 latency (ms)", _metric_ms, le, "≤"),
      ("batched_users_per_s", "batched recommend users/s", common.rate, ge, "≥")):
    rows.append(common.check(title, e2e.get(key), targets.get(key), passed, show,
                       relation, "" if e2e else "no end-to-end section"))
  return rows


def _metric_ms(value: Any) -> str:
  return common.num(value, "{:.2f}")


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
           "", common.labels(doc, data, "serving"), ""]
  ann = doc.get("ann") or []
  if ann:
    rows = [[common.rate(c.get("num_movies")), c.get("kind", "–"),
             common.seconds(c.get("build_s")), common.metric(c.get("recall_at_100")),
             common.rate(c.get("scann_single_qps")),
             common.rate(c.get("exact_single_qps")),
             common.times(c.get("single_speedup")),
             common.rate(c.get("scann_batched_qps")),
             common.rate(c.get("exact_batched_qps")),
             common.times(c.get("batched_speedup"))] for c in ann]
    parts += [f"Top 100 by ScaNN against exact brute force (numpy), medians "
              f"of {common.num(doc.get('repeats'))} repeats; recall@100 against "
              "the exact answer:", "",
              common.table(["movies", "catalog", "index build s", "recall@100",
                      "ScaNN single q/s", "exact single q/s", "speed-up",
                      "ScaNN batched q/s", "exact batched q/s", "speed-up"],
                     rows, right_from=2), ""]
  else:
    missing.append("serving: no ScaNN vs exact results")
  if e2e:
    runs = [("left out" if e2e.get("excludes_rated") else "–", e2e)]
    off = doc.get("end_to_end_no_exclusion")
    if off:
      runs.append(("kept in (same run)", off))
    rated = (f" The export carries {common.rate(e2e.get('history_ratings'))} "
             "synthetic training ratings (MovieLens-like activity), and "
             "requests sample users by activity, heavy users included."
             if e2e.get("excludes_rated") else "")
    parts += [
        f"`Recommender` in process: ScaNN top "
        f"{e2e.get('num_candidates', '–')} → NCF rerank → top "
        f"{e2e.get('k', '–')}; latency over {common.rate(e2e.get('requests'))} "
        f"single-user requests after warm-up, throughput in batches of "
        f"{common.rate(e2e.get('batch_size'))} users.{rated}", "",
        common.table(["rated movies", "p50 ms", "p90 ms", "p99 ms",
                      "batched users/s", "export s", "export MiB"],
                     [[name, _metric_ms(r.get("single_p50_ms")),
                       _metric_ms(r.get("single_p90_ms")),
                       _metric_ms(r.get("single_p99_ms")),
                       common.rate(r.get("batched_users_per_s")),
                       common.seconds(r.get("export_s")),
                       common.num((r.get("export_bytes") or 0) / 2**20,
                                  "{:,.0f}") if r.get("export_bytes")
                       else "–"]
                      for name, r in runs], right_from=1), ""]
  else:
    missing.append("serving: no end-to-end results")
  parts += ["Targets:", "",
            common.table(["target", "measured", "required", "status"],
                   serving_checks(doc)), ""]
  for key, alt in ((common.SCANN_PNG, "ScaNN recall@100 vs queries/s beside exact "
                    "search"), (common.LATENCY_PNG, "recommend latency")):
    if key in images:
      parts += [common.image(images[key], alt, relative_to), ""]
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
  target = common.get(doc, "targets", "recall_at_100")
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
               f"{common.num(doc.get('repeats'))} repeats)")
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
  left.set_title(f"Single-user recommend latency ({common.rate(e2e.get('requests'))}"
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
  right.set_title(f"Batches of {common.rate(e2e.get('batch_size'))} users")
  right.grid(axis="y", alpha=0.3)
  fig.suptitle(
      f"Recommend in process: {e2e.get('num_users', 0):,} users × "
      f"{e2e.get('num_movies', 0):,} movies, ScaNN top "
      f"{e2e.get('num_candidates', '?')} → NCF rerank → top "
      f"{e2e.get('k', '?')} (SYNTHETIC model)")
  fig.savefig(path, dpi=110)
  return True
