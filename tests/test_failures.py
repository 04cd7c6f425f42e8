"""Library exceptions that stand for ordinary conditions (cryounet.failures); the command line's
one-line messages for them are tested in test_cli_hardening.py."""
from __future__ import annotations

import pytest


def test_a_failed_onednn_primitive_under_a_limit_is_out_of_memory(monkeypatch: pytest.MonkeyPatch) -> None:
    from cryounet import failures

    error = RuntimeError("could not create a primitive")
    monkeypatch.setattr(failures, "address_space_limit", lambda: None)
    assert failures.describe_failure(error) is None  # without a limit it may be a bug: reported as one
    monkeypatch.setattr(failures, "address_space_limit", lambda: 800 * 1024 ** 2)
    assert "out of memory: this process's address-space limit" in failures.describe_failure(error)
