"""Run the sandbox Jira on its own: `python -m integrations.sandbox.jira --port 8081`."""

from __future__ import annotations

import argparse

import uvicorn

from integrations.sandbox.jira.app import JiraSandbox


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=8081)
    parser.add_argument("--issues", type=int, default=2000)
    parser.add_argument("--flavour", choices=("cloud", "datacenter"), default="cloud")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--projects", default="PAY,OPS,WEB", help="comma-separated keys")
    parser.add_argument("--labels", default="", help="comma-separated labels to sprinkle")
    parser.add_argument("--latency", type=float, default=0.0, help="seconds added per request")
    args = parser.parse_args(argv)
    sandbox = JiraSandbox(
        args.flavour,
        args.issues,
        args.seed,
        [p for p in args.projects.split(",") if p],
        [label for label in args.labels.split(",") if label],
    )
    sandbox.faults.latency = args.latency
    url = f"http://127.0.0.1:{args.port}"
    if args.flavour == "cloud":
        auth = f"LADDER_JIRA_EMAIL={sandbox.email} LADDER_JIRA_API_TOKEN={sandbox.api_token}"
    else:
        auth = f"LADDER_JIRA_PAT={sandbox.pat}"
    print(f"sandbox Jira ({args.flavour}, {args.issues} issues): LADDER_JIRA_URL={url} {auth}")
    uvicorn.run(sandbox.app, host="127.0.0.1", port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
