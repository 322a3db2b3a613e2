"""What every section of the report shares: inputs, labels, formatting."""

from __future__ import annotations

import dataclasses
import json
import math
import os
from typing import Any, Callable, Optional, Sequence

from ncf_tfrs import cli


BEGIN_MARKER = "<!-- results:begin -->"
END_MARKER = "<!-- results:end -->"
SUITES = ("quality", "train", "serving", "data")
DEFAULT_FILES = {suite: f"bench_{suite}.json" for suite in SUITES}

TRAINING_CURVES_PNG = "training_curves.png"
RECALL_PNG = "recall_at_k.png"
SCANN_PNG = "scann_vs_exact.png"
LATENCY_PNG = "serving_latency.png"

COLORS = {"product": "tab:blue", "notebook": "tab:orange",
           "tutorial": "tab:green", "popularity": "tab:gray",
           "ncf": "tab:purple", "rerank": "tab:red"}


class ReportError(cli.CommandError):
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




def _suite_of(doc: dict[str, Any], path: str) -> str:
  """The suite of one bench JSON: its "suite" key, else its shape."""
  suite = doc.get("suite")
  if suite is None:
    if "stages" in doc:
      suite = "train"
    elif "ann" in doc or "end_to_end" in doc:
      suite = "serving"
    elif "runs" in doc and "seeds" in doc:
      suite = "quality"
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




def get(doc: Any, *keys: str) -> Any:
  """doc[k1][k2]..., or None where any level is missing or null."""
  for key in keys:
    if not isinstance(doc, dict) or doc.get(key) is None:
      return None
    doc = doc[key]
  return doc


def num(value: Any, fmt: str = "{:,.3g}") -> str:
  if value is None or (isinstance(value, float) and math.isnan(value)):
    return "–"
  return fmt.format(value)


def metric(value: Any) -> str:
  return num(value, "{:.4f}")


def seconds(value: Any) -> str:
  return num(value, "{:,.1f}")


def rate(value: Any) -> str:
  return num(value, "{:,.0f}")


def gib(value: Any) -> str:
  return num(value, "{:.2f}")


def times(value: Any) -> str:
  return num(value, "{:.1f}×")


def times2(value: Any) -> str:
  """A ratio near its target, where one decimal would round across it."""
  return num(value, "{:.2f}×")


def table(header: Sequence[str], rows: Sequence[Sequence[str]],
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


def labels(doc: dict[str, Any], data: str, suite: str) -> str:
  """The three labels every table carries: hardware, data, command."""
  command = doc.get("command")
  return "\n".join([
      f"- Hardware: {hardware_label(doc.get('machine'))}",
      f"- Data: {data}",
      "- Command: " + (f"`{command}`" if command else
                       f"not recorded in the {suite} JSON"),
  ])


def check(name: str, measured: Optional[float], required: Optional[float],
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


def image(path: str, alt: str, relative_to: str) -> str:
  return f"![{alt}]({os.path.relpath(path, relative_to)})"
