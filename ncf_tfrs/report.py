r"""Renders the benchmarks' JSON into results.md, PNG plots and the README block.

  python -m ncf_tfrs.report \
      --inputs bench_train.json,bench_serving.json,bench_data.json \
      --output_dir docs/results --readme README.md

The command only: flags -> `ncf_tfrs.bench.report.build_report`. A
`ReportError` ends with `report: <what and why>` and exit status 1, without
a traceback.
"""

from __future__ import annotations

import sys

from absl import app
from absl import flags

from ncf_tfrs import cli
from ncf_tfrs.bench import report

_INPUTS = flags.DEFINE_list(
    "inputs", list(report.DEFAULT_FILES.values()),
    "Bench JSON files (any of the train, serving and data suites); missing "
    "ones are listed in the report.")
_OUTPUT_DIR = flags.DEFINE_string("output_dir", "docs/results",
                                  "Where results.md and the PNGs go.")
_README = flags.DEFINE_string(
    "readme", None, "A Markdown file whose block between "
    f"'{report.BEGIN_MARKER}' and '{report.END_MARKER}' is replaced by the "
    "results.")


def main(argv) -> None:
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  command = " ".join(["python -m ncf_tfrs.report"] + sys.argv[1:])
  files = report.build_report(_INPUTS.value, _OUTPUT_DIR.value,
                              _README.value or None, command)
  print(f"wrote {files.markdown}")
  for image in files.images:
    print(f"wrote {image}")
  if files.readme:
    print(f"updated the results block of {files.readme}")
  for line in files.missing:
    print(f"not in the report: {line}")


def run_main() -> None:
  """Console-script entry point (`ncf-tfrs-report`)."""
  cli.run(main)


if __name__ == "__main__":
  run_main()
