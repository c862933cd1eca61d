"""No credential is committed: the tree is scanned with detect-secrets (Yelp)."""

from __future__ import annotations

import subprocess
from pathlib import Path

from detect_secrets import SecretsCollection
from detect_secrets.settings import default_settings

REPO = Path(__file__).resolve().parents[2]


def scan(paths: list[Path]) -> dict[str, list[dict[str, object]]]:
    found = SecretsCollection(root=str(REPO))
    with default_settings():
        for path in paths:
            found.scan_file(str(path))
    return found.json()


def repository_files() -> list[Path]:
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    return [REPO / name for name in listed if (REPO / name).is_file()]


def test_the_scanner_finds_a_planted_credential(tmp_path: Path) -> None:
    planted = tmp_path / "settings.py"
    # Assembled at run time so that this file itself holds no secret-shaped literal.
    key = "wJalrXUtnFEMI/K7MDENG/" + "bPxRfiCYEXAMPLEKEY"
    planted.write_text(f'AWS_SECRET_ACCESS_KEY = "{key}"\n')
    assert scan([planted]), (
        "detect-secrets should flag a planted key; the check below would be blind"
    )


def test_no_secrets_in_the_repository() -> None:
    files = repository_files()
    assert len(files) > 50
    findings = scan(files)
    assert findings == {}, (
        "possible secrets committed (move them to the environment, or mark a test-only value "
        f"with `# pragma: allowlist secret`): {sorted(findings)}"
    )
