"""The command line's behaviour at its edges."""

import subprocess
import sys


def test_a_reader_that_goes_away_ends_the_command_quietly_as_unix_tools_do():
    """`personify stack status | head -1`: no traceback, the exit status of a SIGPIPE."""
    program = """
import sys
from personify import cli
from personify.stack import services

def status(settings):
    raise BrokenPipeError(32, "Broken pipe")

services.status = status
sys.exit(cli.main(["stack", "status"]))
"""
    ended = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True,
                           timeout=60)
    assert ended.returncode == 141
    assert ended.stderr == ""
