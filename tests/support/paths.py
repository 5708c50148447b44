"""Where things are in the checkout, for the tests that read its files or run its commands."""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
POLICIES_DIR = REPO / "policies"
# screenshots and other files a test leaves for a person to look at (git-ignored)
ARTIFACTS = REPO / "test-artifacts"
