"""Schema-driven fuzz of every operation in a running server's /openapi.json,
with Schemathesis (a property-based API tester nobody here wrote).

Runs Schemathesis twice against BASE_URL: without a token, then (with
--token) as that user. Every check is on: a 5xx, a response whose status,
content type, headers or body the document does not describe, a request the
document calls valid that is refused, or one it calls invalid that is
accepted, all fail the run. Exits 0 when both passes are clean, 1 otherwise,
after a summary of what failed.

    python openapi_fuzz.py http://127.0.0.1:8080 --token "$ACCESS_TOKEN"
"""

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

# What a schema cannot say, and so stays outside the document: a phone number
# must be one libphonenumber calls valid (sign-in, altPhone), a photoUrl one
# the URL parser takes, and contact and block lists may only name registered
# users, so a schema-valid request may still get 400 from these operations.
# A request over a documented limit (maxItems) is refused with 413.
CONFIG = """
[checks.negative_data_rejection]
expected-statuses = [400, 401, 403, 404, 405, 406, 409, 413, 415, 422, 428, 429, "5xx"]

[[operations]]
include-name = ["POST /v1/auth/otp", "POST /v1/auth/verify", "PUT /v1/me/contacts", "PUT /v1/me/blocked",
                "PUT /v1/me/profile"]
checks.positive_data_acceptance.expected-statuses = ["2xx", 400, 401, 403, 404, 409, 429]
"""


def run(base_url, token, work, args):
    """One Schemathesis pass; returns (exit code, JSON report or None)."""
    name = "with-token" if token else "anonymous"
    report = work / f"{name}.json"
    command = [
        sys.executable, "-m", "schemathesis.cli",
        "--config-file", str(work / "schemathesis.toml"),
        "run", f"{base_url}/openapi.json",
        "--checks", "all",
        "--max-examples", str(args.max_examples),
        "--seed", str(args.seed),
        "--generation-database", "none",
        # One worker: Hypothesis under threads on CPython 3.11 can fail with
        # "AST constructor recursion depth mismatch".
        "--workers", "1",
        "--request-timeout", "10",
        "--no-color",
        "--report", "json", "--report-json-path", str(report),
    ]
    if token:
        command += ["--header", f"Authorization: Bearer {token}"]
    print(f"== schemathesis, {name}", flush=True)
    # Its own working directory: its caches stay out of the repository.
    code = subprocess.run(command, cwd=work).returncode
    return name, code, json.loads(report.read_text()) if report.exists() else None


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("base_url", help="e.g. http://127.0.0.1:8080")
    parser.add_argument("--token", help="a user's access token for the second pass")
    parser.add_argument("--max-examples", type=int, default=100, help="per operation and phase")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    try:
        import schemathesis  # noqa: F401  (only to say what is missing)
    except ImportError:
        sys.exit(f"schemathesis is not installed for {sys.executable}: "
                 "pip install -r tests/interop/requirements.txt")
    base_url = args.base_url.rstrip("/")

    with tempfile.TemporaryDirectory(prefix="openapi-fuzz-") as tmp:
        work = Path(tmp)
        (work / "schemathesis.toml").write_text(CONFIG)
        passes = [run(base_url, None, work, args)]
        if args.token:
            passes.append(run(base_url, args.token, work, args))

    print("\n== OpenAPI fuzz summary")
    failed = False
    for name, code, report in passes:
        if code == 0:
            print(f"{name}: passed")
            continue
        failed = True
        print(f"{name}: FAILED (schemathesis exit code {code})")
        for f in (report or {}).get("failures", []):
            print(f"  {f['code']} {f['title']}: {', '.join(f['operations'])}")
        for e in (report or {}).get("errors", []):
            print(f"  error: {json.dumps(e)[:300]}")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
