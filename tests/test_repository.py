"""Rules of the repository's history that no code holds: commit subjects of at most 72 characters
(the detail goes in the body) and no work-in-progress commits, for every commit after the one where
the rule was set."""
from __future__ import annotations

import shutil
import subprocess

import pytest

from engine_helpers import REPO

#: The last commit before the rule: its history is left as it was.
RULE_SET_AFTER = "d5f2e35"
SUBJECT_LIMIT = 72


def _subjects() -> list[str]:
    if shutil.which("git") is None or not (REPO / ".git").exists():
        pytest.skip("not a git checkout")
    known = subprocess.run(["git", "cat-file", "-e", f"{RULE_SET_AFTER}^{{commit}}"], cwd=REPO,
                           capture_output=True)
    if known.returncode != 0:
        pytest.skip(f"a shallow checkout without {RULE_SET_AFTER}")
    log = subprocess.run(["git", "log", "--format=%s", f"{RULE_SET_AFTER}..HEAD"], cwd=REPO,
                         capture_output=True, text=True, check=True)
    return log.stdout.splitlines()


def test_commit_subjects_are_short() -> None:
    long = [s for s in _subjects() if len(s) > SUBJECT_LIMIT]
    assert long == [], f"subjects over {SUBJECT_LIMIT} characters: put the detail in the body"


def test_no_work_in_progress_commits() -> None:
    assert [s for s in _subjects() if s.lower().startswith(("wip", "fixup!", "squash!"))] == []
