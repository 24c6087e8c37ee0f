"""Known vulnerabilities in the locked dependencies: `make audit` (part of `make check` and
`make test`).

Runs pip-audit over requirements.lock (every pin with its hashes, nothing installed) against
the PyPI advisory data. Exit 1 when a locked package has a known vulnerability. When the
advisory data cannot be reached (no network), the scan has NOT been done: that is said in a
banner nobody can miss, and the exit is 0, so a build without network still builds. Set
LAB_AUDIT_REQUIRED=1 (a release build) to make an unreachable scan fail too.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LOCK = ROOT / "requirements.lock"
TIME_LIMIT = 240  # seconds: a network that swallows requests must not hold the build


def verdict(returncode: int, report: str | None, errors: str) -> tuple[int, str]:
    """(exit status, what to print) from pip-audit's exit status, JSON report and stderr.

    pip-audit says "No known vulnerabilities found" with exit 0 even when it could look up
    none of the packages (each then carries a `skip_reason`): that counts as no scan here.
    """
    found: list[str] = []
    checked = 0
    skipped: list[str] = []
    for dependency in json.loads(report).get("dependencies", []) if report else []:
        if "skip_reason" in dependency:
            skipped.append(dependency["name"])
            continue
        checked += 1
        for vuln in dependency.get("vulns", []):
            fix = ", ".join(vuln.get("fix_versions", [])) or "no fixed version yet"
            found.append(
                f"  {dependency['name']} {dependency.get('version', '?')}: {vuln['id']} "
                f"(fixed in {fix})"
            )
    if found:
        return 1, "KNOWN VULNERABILITIES in requirements.lock:\n" + "\n".join(found)
    if returncode == 0 and checked:
        note = f" ({len(skipped)} could not be looked up: {', '.join(skipped)})" if skipped else ""
        return 0, f"pip-audit: no known vulnerabilities in {checked} locked packages{note}"
    if skipped:
        why = [f"none of the {len(skipped)} packages could be looked up (first: {skipped[0]})"]
    else:
        why = errors.strip().splitlines()[-3:]
    banner = "!" * 78
    required = os.environ.get("LAB_AUDIT_REQUIRED") == "1"
    return (1 if required else 0), (
        f"{banner}\n!! VULNERABILITY SCAN NOT DONE: the advisory data could not be reached.\n"
        f"!! The dependencies in requirements.lock were NOT checked for known vulnerabilities.\n"
        f"!! Run `make audit` where the network reaches pypi.org.\n{banner}\n" + "\n".join(why)
    )


def main(argv: list[str]) -> int:
    lock = Path(argv[0]) if argv else LOCK
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / "audit.json"
        try:
            done = subprocess.run(  # noqa: S603 - this interpreter, fixed arguments
                [
                    sys.executable, "-m", "pip_audit",
                    "-r", str(lock), "--require-hashes", "--disable-pip",
                    "--progress-spinner", "off", "--timeout", "20",
                    "-f", "json", "-o", str(out),
                ],
                capture_output=True, text=True, check=False, timeout=TIME_LIMIT,
            )  # fmt: skip
        except subprocess.TimeoutExpired:
            print(verdict(1, None, f"no answer within {TIME_LIMIT} s")[1])
            return 1 if os.environ.get("LAB_AUDIT_REQUIRED") == "1" else 0
        report = out.read_text() if out.exists() else None
    status, text = verdict(done.returncode, report, done.stderr)
    print(text, file=sys.stderr if status else sys.stdout)
    return status


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
