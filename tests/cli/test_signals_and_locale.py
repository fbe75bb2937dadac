"""An error raised while unwinding from Ctrl-C is an interruption (exit 130, one line), and
the CLI prints under an ASCII locale without UTF-8 mode."""

import os
import subprocess
import sys

import pytest

from nas_mnist.cli import main
import nas_mnist.cli as cli


def test_an_error_a_library_raises_from_a_ctrl_c_is_an_interruption(monkeypatch, capsys):
    def handler(args):  # what torch's exporter does with a KeyboardInterrupt mid-import
        try:
            cli._interrupt(2, None)
        except KeyboardInterrupt:
            raise RuntimeError("module torch._dynamo has no attribute exc\n(118 lines)")

    parser = cli.build_parser()
    real = parser.parse_args

    def parse(argv):
        args = real(argv)
        args.handler = handler
        return args

    monkeypatch.setattr(cli, "build_parser", lambda: parser)
    monkeypatch.setattr(parser, "parse_args", parse)
    assert main(["count", "trial81"]) == 130
    assert capsys.readouterr().err.strip() == "nas-mnist: interrupted"


def test_without_a_signal_a_programming_error_keeps_its_traceback(monkeypatch):
    parser = cli.build_parser()
    real = parser.parse_args

    def parse(argv):
        args = real(argv)
        args.handler = lambda args: 1 / 0
        return args

    monkeypatch.setattr(cli, "build_parser", lambda: parser)
    monkeypatch.setattr(parser, "parse_args", parse)
    try:
        main(["count", "trial81"])
    except ZeroDivisionError:
        return
    raise AssertionError("a bug was turned into an exit code")


@pytest.mark.slow  # starts a subprocess
def test_the_cli_prints_under_an_ascii_locale_without_utf8_mode(tmp_path):
    env = dict(os.environ, LC_ALL="C", LANG="C", PYTHONUTF8="0", PYTHONCOERCECLOCALE="0",
               PYTHONIOENCODING="")
    code = ("import sys; from nas_mnist.cli import main, _safe_streams; "
            "from nas_mnist.files import write_text; "
            "write_text('page.html', '99.50 \\u00b1 0.03 %, \\ufffd'); "
            "_safe_streams(); print('99.50 \\u00b1 0.03 %'); "
            "sys.exit(main(['count', 'trial81']))")
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                          cwd=tmp_path)
    assert done.returncode == 0, done.stderr.decode(errors="replace")[-500:]
    assert (tmp_path / "page.html").read_text(encoding="utf-8").startswith("99.50 \u00b1")
    assert done.stdout.startswith(b"99.50 \\xb1 0.03 %")
