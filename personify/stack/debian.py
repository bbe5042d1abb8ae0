"""Install a missing server from Debian's packages, or say exactly how to."""

from __future__ import annotations

import os
import shutil
import subprocess

from personify.stack.processes import StackError


def ensure_program(program: str, package: str, progress=print) -> str:
    """The path of `program`, installing Debian package `package` when it is missing and we may."""
    found = shutil.which(program)
    if found:
        return found
    if shutil.which("apt-get") is None:
        raise StackError(f"`{program}` is missing and there is no apt-get here: install "
                         f"`{package}` with your system's package manager, then run the "
                         "command again.")
    if os.geteuid() != 0:
        raise StackError(f"`{program}` is missing: run `sudo apt-get install -y {package}`, "
                         "then run the command again.")
    progress(f"installing {package} from Debian's packages (once) ...")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for argv in (["apt-get", "update", "-qq"],
                 ["apt-get", "install", "-y", "-qq", "--no-install-recommends", package]):
        result = subprocess.run(argv, capture_output=True, text=True, env=env)
        if result.returncode != 0:
            raise StackError(f"`{' '.join(argv)}` failed; fix apt and retry:\n"
                             + (result.stdout + result.stderr)[-2000:])
    found = shutil.which(program)
    if not found:
        raise StackError(f"`{package}` installed but `{program}` is still not on PATH.")
    return found
