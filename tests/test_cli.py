import subprocess
import sys

from rerec.cli import COMMANDS, main


def test_top_level_help_lists_every_stage(capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for name in COMMANDS:
        assert name in out


def test_unknown_command_is_a_clear_error(capsys):
    assert main(["bogus"]) == 2
    err = capsys.readouterr().err
    assert "unknown command 'bogus'" in err and "Fix:" in err


def test_console_script_runs_without_traceback():
    proc = subprocess.run([sys.executable, "-m", "rerec.cli", "bogus"], capture_output=True, text=True)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
