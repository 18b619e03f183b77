"""The command dispatcher imports only the chosen sub-command."""

import subprocess
import sys


def test_help_lists_commands_without_importing_them():
    code = (
        "import sys, contextlib, io\n"
        "from manifold_align import cli\n"
        "buf = io.StringIO()\n"
        "with contextlib.redirect_stdout(buf):\n"
        "    try:\n"
        "        cli.main(['--help'])\n"
        "    except SystemExit:\n"
        "        pass\n"
        "assert 'simulate' in buf.getvalue() and 'train' in buf.getvalue()\n"
        "assert 'manifold_align.train' not in sys.modules\n"
        "assert 'manifold_align.simulate' not in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_unknown_command_is_an_error():
    proc = subprocess.run(
        [sys.executable, "-m", "manifold_align.cli", "frobnicate"], capture_output=True, text=True
    )
    assert proc.returncode == 2
    assert "invalid choice" in proc.stderr
