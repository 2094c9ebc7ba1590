"""Debian packages the tests need, installed with apt-get when missing (the tests run as root)."""

from __future__ import annotations

import os
import subprocess


def apt_install(package: str) -> None:
    if os.geteuid() != 0:
        raise RuntimeError(f"{package} is missing and installing it needs root")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    subprocess.run(["apt-get", "update", "-qq"], check=True, env=env, capture_output=True,
                   timeout=300)
    subprocess.run(["apt-get", "install", "-y", "-qq", package], check=True, env=env,
                   capture_output=True, timeout=600)
