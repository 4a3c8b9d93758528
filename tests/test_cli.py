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


def test_deprecated_spellings_still_work_and_say_so(capsys, monkeypatch):
    """`rerec registry` is `rerec champion`, `rerec run --profile` is `--preset`: for one release each still works,
    with a note naming the new spelling."""
    from rerec.pipeline import run
    from rerec.registry import champion

    assert main(["--help"]) == 0
    assert "'rerec registry' is now 'rerec champion'" in capsys.readouterr().out
    reviewed = []
    monkeypatch.setattr(champion, "review", lambda name: reviewed.append(name) or f"review of {name}")
    assert main(["registry", "review", "--name", "m"]) == 0
    captured = capsys.readouterr()
    assert reviewed == ["m"] and "review of m" in captured.out
    assert "'registry' is deprecated" in captured.err and "rerec champion" in captured.err

    presets = []

    def fake_run(preset, out, **kwargs):
        presets.append(preset)
        return {"report": "r.json", "report_html": "r.html", "run_id": "1", "tracking_uri": "http://x",
                "seconds": 1.0, "preset": preset}

    monkeypatch.setattr(run, "run_pipeline", fake_run)
    assert main(["run", "--profile", "smoke", "--out", "o"]) == 0
    assert presets == ["smoke"] and "--profile is deprecated" in capsys.readouterr().err
    assert main(["run", "--preset", "tiny", "--out", "o"]) == 0
    assert presets == ["smoke", "tiny"] and "deprecated" not in capsys.readouterr().err
