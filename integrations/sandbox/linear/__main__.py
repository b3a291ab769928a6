"""Serve the sandbox Linear: `python -m integrations.sandbox.linear --port 8020 --issues 2000`.

Point Ladder at it with `LADDER_LINEAR_URL=http://127.0.0.1:<port>/graphql` and
`LADDER_LINEAR_API_KEY=lin_api_sandbox` (or the `--api-key` given).
"""

from __future__ import annotations

import argparse
import sys

import uvicorn

from integrations.sandbox.linear.app import DEFAULT_API_KEY, LinearSandbox, Quota


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m integrations.sandbox.linear")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8020)
    parser.add_argument("--issues", type=int, default=2_000)
    parser.add_argument("--teams", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--label", action="append", default=[], help="an extra label name")
    parser.add_argument("--api-key", default=DEFAULT_API_KEY)
    parser.add_argument("--quota-requests", type=int, default=Quota.requests)
    parser.add_argument("--quota-complexity", type=int, default=Quota.complexity)
    parser.add_argument(
        "--schema", default=None, help="schema.graphql to serve (default: the package's)"
    )
    args = parser.parse_args(argv)
    sandbox = LinearSandbox(
        issues=args.issues,
        teams=args.teams,
        seed=args.seed,
        labels=args.label,
        api_key=args.api_key,
        quota=Quota(requests=args.quota_requests, complexity=args.quota_complexity),
        schema_path=args.schema,
    )
    print(f"sandbox Linear: http://{args.host}:{args.port}/graphql", flush=True)
    uvicorn.run(sandbox.app, host=args.host, port=args.port, log_level="warning")
    return 0


if __name__ == "__main__":
    sys.exit(main())
