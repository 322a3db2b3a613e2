"""Every command ends a user's mistake with one `error:` line and a status."""

import json
import os
import pathlib
import shutil
import subprocess
import sys
import zipfile

import ncf_tfrs  # noqa: F401  (must precede TensorFlow: selects tf-keras)

from absl import app
from absl import flags
from absl import logging as absl_logging
from absl.testing import flagsaver
import pytest
import tensorflow as tf

from ncf_tfrs import cli
from ncf_tfrs.training import callbacks

ROOT = pathlib.Path(__file__).resolve().parents[1]
DUMMY = ROOT / "ncf_tfrs" / "datasets" / "movielens_users" / "dummy_data"


def _run_in_process(main, *args, capsys):
  with flagsaver.flagsaver():
    flags.FLAGS.unparse_flags()
    argv, sys.argv = sys.argv, ["command", *args]
    try:
      with pytest.raises(SystemExit) as info:
        cli.run(main)
    finally:
      sys.argv = argv
      absl_logging.set_verbosity(absl_logging.INFO)
  return info.value.code, capsys.readouterr().err.strip().splitlines()


@pytest.mark.parametrize("error,status", [
    (app.UsageError("--k must be positive"), 2),
    (ValueError("ratings.csv, line 3: bad"), 1),
    (FileNotFoundError("no export in /x"), 1),
    (callbacks.NaNLossError("loss is NaN at step 7\nlower the rates"), 1),
    (tf.errors.PermissionDeniedError(None, None, "/x; Permission denied"), 1),
])
def test_user_errors_end_as_one_line(error, status, capsys):
  def main(argv):
    raise error

  code, lines = _run_in_process(main, capsys=capsys)
  assert code == status
  first = str(getattr(error, "message", None) or error).splitlines()[0]
  assert lines == [f"error: {first}"]


def test_ctrl_c_is_one_line_and_status_130(capsys):
  def main(argv):
    raise KeyboardInterrupt

  with flagsaver.flagsaver():
    flags.FLAGS.unparse_flags()
    argv, sys.argv = sys.argv, ["command"]
    try:
      with pytest.raises(SystemExit) as info:
        cli.run(main, interrupted="interrupted; rerun to resume.")
    finally:
      sys.argv = argv
  assert info.value.code == 130
  assert capsys.readouterr().err.strip().splitlines() == [
      "error: interrupted; rerun to resume."]


def test_bugs_and_verbose_keep_their_traceback(capsys):
  def bug(argv):
    raise KeyError("a bug, not a user's mistake")

  with pytest.raises(KeyError):
    _run_in_process(bug, capsys=capsys)

  def mistake(argv):
    raise ValueError("bad file")

  with pytest.raises(ValueError, match="bad file"):
    _run_in_process(mistake, "--verbose", capsys=capsys)


def test_info_logs_only_with_verbose(capsys):
  levels = []

  def main(argv):
    levels.append(absl_logging.get_verbosity())

  for args, level in (((), absl_logging.WARNING), (("--verbose",),
                                                   absl_logging.INFO)):
    code, _ = _run_in_process(main, *args, capsys=capsys)
    assert not code and levels[-1] == level, args


def test_directory_flags_are_checked_before_work(tmp_path):
  a_file = tmp_path / "a_file"
  a_file.write_text("")
  with pytest.raises(app.UsageError, match=r"--model_dir=.*a_file is a file"):
    cli.check_writable_dir("model_dir", str(a_file))
  with pytest.raises(app.UsageError, match=r"--export_dir=.*a_file is a file"):
    cli.check_writable_dir("export_dir", str(a_file / "below"))
  cli.check_writable_dir("model_dir", str(tmp_path / "new" / "dir"))
  if os.geteuid() != 0:  # root may write anywhere.
    read_only = tmp_path / "read_only"
    read_only.mkdir(mode=0o500)
    with pytest.raises(app.UsageError, match="is not writable"):
      cli.check_writable_dir("model_dir", str(read_only / "run"))


# The cases run in a few processes (tests/cli_driver.py): TensorFlow's import
# costs seconds; commands that share flag names (or, as recommend, require
# one) need processes of their own.
GROUPS = (("ncf_tfrs.train", "ncf_tfrs.report"),
          ("ncf_tfrs.export.__main__", "ncf_tfrs.bench.__main__",
           "ncf_tfrs.datasets.movielens_users.recbole_ml100k"),
          ("ncf_tfrs.recommend",))

def _commands(tmp: pathlib.Path) -> dict[str, list[tuple[list[str], int, str]]]:
  """command module -> [(arguments, status, start of the last line)]."""
  a_file = tmp / "a_file"
  a_file.write_text("")
  (tmp / "empty").mkdir()
  bad = tmp / "bad" / "ml-100k"
  shutil.copytree(DUMMY / "ml-100k", bad)
  with (bad / "u.data").open("a") as f:
    f.write("9\t1\t7\t880000000\n")  # Line 15: 7 stars.
  for folder in ("ncf_tfrs", "ncf_tfrs_index"):  # A complete version 1.
    (tmp / "export" / folder / "1").mkdir(parents=True)
  not_a_wheel = tmp / "recbole.whl"
  with zipfile.ZipFile(not_a_wheel, "w") as z:
    z.writestr("other.txt", "")
  data = f"--data_dir={tmp / 'tfds'}"
  offline = ["--dataset=100k", "--download=false", data,
             f"--model_dir={tmp / 'run'}"]
  return {
      "ncf_tfrs.train": [
          (["--flagfile=configs/demo.flags", f"--model_dir={a_file}"], 2,
           f"error: --model_dir={a_file} is a file, not a directory."),
          ([*offline, f"--manual_dir={tmp / 'empty'}"], 1,
           "error: movielens_users/100k is not prepared in"),
          ([*offline, f"--manual_dir={tmp / 'bad'}"], 1,
           f"error: {bad / 'u.data'}, line 15: rating 7 is not on"),
          (["--split=by_moon"], 2, "error: flag --split=by_moon: value "
           "should be one of"),
          ([f"--flagfile={tmp / 'missing.flags'}"], 2,
           "error: ERROR:: Unable to open flagfile"),
      ],
      "ncf_tfrs.export.__main__": [
          ([f"--model_dir={tmp / 'empty'}", f"--export_dir={tmp / 'e'}"], 2,
           f"error: --model_dir={tmp / 'empty'} holds no trained model"),
      ],
      "ncf_tfrs.recommend": [
          ([f"--export_dir={tmp / 'missing'}", "--user_id=1"], 1,
           "error: No complete export of 'ncf_tfrs' in"),
          ([f"--export_dir={tmp / 'export'}", "--user_id=1", "--version=99"],
           1, "error: version 99 of 'ncf_tfrs' is not in"),
          ([f"--export_dir={tmp / 'export'}", "--user_id=1,2",
            "--seen=3"], 2, "error: --seen applies to a single --user_id."),
          (["--k=-1", "--user_id=1"], 2, "error: flag --k=-1:"),
      ],
      "ncf_tfrs.report": [
          ([f"--inputs={tmp / 'missing.json'}"], 1, "error: "),
      ],
      "ncf_tfrs.bench.__main__": [
          (["--suite=quality", "--seeds=one"], 2, "error: --seeds:"),
          # Refused before the suite runs, not after.
          (["--suite=data", f"--output={not_a_wheel}/bench.json"], 2,
           f"error: --output={not_a_wheel} is a file, not a directory."),
      ],
      "ncf_tfrs.datasets.movielens_users.recbole_ml100k": [
          ([f"--wheel={not_a_wheel}", f"--output_dir={tmp / 'out'}"], 1,
           f"error: {not_a_wheel}"),
      ],
  }


@pytest.fixture(scope="module")
def command_results(tmp_path_factory):
  tmp = tmp_path_factory.mktemp("commands")
  commands = _commands(tmp)
  env = dict(os.environ, PYTHONPATH=str(ROOT), TF_CPP_MIN_LOG_LEVEL="3")
  assert sorted(sum(GROUPS, ())) == sorted(commands)
  results = {}
  for number, group in enumerate(GROUPS):
    path = tmp / f"group{number}.json"
    path.write_text(json.dumps(
        {module: [args for args, _, _ in commands[module]]
         for module in group}))
    # A hang detector, far above the seconds this takes on a quiet machine.
    done = subprocess.run(
        [sys.executable, str(ROOT / "tests" / "cli_driver.py"), str(path)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=900,
        check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    answers = json.loads(done.stdout.strip().splitlines()[-1])
    results.update({module: list(zip(commands[module], answers[module]))
                    for module in group})
  return results


@pytest.mark.parametrize("module", sum(GROUPS, ()))
def test_command_errors_are_one_line_with_a_status(module, command_results):
  for (args, status, start), answer in command_results[module]:
    assert answer["status"] == status, (args, answer)
    assert answer["last_line"].startswith(start), (args, answer)
