"""``responder policies …``: check, import, export, watch, history, show, diff, publish, rollback.

``check`` works on files alone; the others use the versioned store in the Redis of the
settings (``REDIS_URL``, else the embedded server).
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import signal
import sys
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from infra.settings import Settings
from supervisor.policy_files import ImportRefused, export_dir, import_dir, watch_dir
from supervisor.policy_format import check_dir
from supervisor.policy_store import PolicyStore, StoreError


def add_policies_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = sub.add_parser("policies", help="policy documents: check, import, export, watch, history")
    cmds = parser.add_subparsers(dest="policies_command", required=True)
    check = cmds.add_parser("check", help="validate a directory of policy files; exit 1 on problems")
    check.add_argument("dir", nargs="?", type=Path, help="default: the configured policies_dir")
    imp = cmds.add_parser("import", help="save every changed file of DIR as a new version")
    imp.add_argument("dir", type=Path)
    imp.add_argument("--author", default=None)
    imp.add_argument("--message", default="import")
    exp = cmds.add_parser("export", help="write every policy's latest version to DIR as <id>.md")
    exp.add_argument("dir", type=Path)
    exp.add_argument("--published", action="store_true", help="the published versions instead")
    watch = cmds.add_parser("watch", help="turn every saved edit of a file in DIR into a new version")
    watch.add_argument("dir", type=Path)
    watch.add_argument("--author", default=None)
    hist = cmds.add_parser("history", help="every version of one policy, newest first")
    hist.add_argument("id")
    show = cmds.add_parser("show", help="print the exact text of one version")
    show.add_argument("id")
    show.add_argument("--version", type=int, default=None, help="default: the published version")
    for name, text in (
        ("publish", "publish VERSION: a new version with its content and status: published"),
        ("rollback", "a new version with the content (and status) of VERSION"),
    ):
        cmd = cmds.add_parser(name, help=text)
        cmd.add_argument("id")
        cmd.add_argument("version", type=int)
        cmd.add_argument("--author", default=None)
        cmd.add_argument("--message", default="")
        cmd.add_argument("--base", type=int, default=None, help="fail (409-style) unless this is the latest")
    diff = cmds.add_parser("diff", help="unified diff between two versions of one policy")
    diff.add_argument("id")
    diff.add_argument("old", type=int)
    diff.add_argument("new", type=int)


def run_policies(args: argparse.Namespace, settings: Settings) -> int:
    if args.policies_command == "check":
        return check(args.dir or settings.policies_dir)
    return asyncio.run(_with_store(settings, lambda store: _COMMANDS[args.policies_command](store, args)))


def check(directory: Path) -> int:
    if not directory.is_dir():
        print(f"{directory}: not a directory", file=sys.stderr)
        return 2
    docs, problems = check_dir(directory)
    for problem in problems:
        print(f"{directory / problem.file}:{problem.line}: {problem.message}")
    if problems:
        print(f"{len(problems)} problem(s) in {directory}", file=sys.stderr)
        return 1
    print(f"{len(docs)} policies OK: {', '.join(d.label() for d in docs)}")
    return 0


async def _with_store(settings: Settings, run: Callable[[PolicyStore], Awaitable[int]]) -> int:
    from infra.redis_server import connect_redis

    redis = await connect_redis(settings.redis_url, settings.redis_data_dir)
    try:
        return await run(PolicyStore(redis.client, settings.redis_prefix))
    except ImportRefused as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        return 1
    except StoreError as exc:
        print(exc, file=sys.stderr)
        return 1
    finally:
        await redis.close()


def _author(value: str | None) -> str:
    if value:
        return value
    try:
        return getpass.getuser()
    except Exception:
        return "cli"


async def _import(store: PolicyStore, args: argparse.Namespace) -> int:
    results = await import_dir(store, args.dir, author=_author(args.author), message=args.message)
    for r in results:
        print(f"{r.id}@{r.version} saved" if r.version else f"{r.id} unchanged")
    return 0


async def _export(store: PolicyStore, args: argparse.Namespace) -> int:
    written = await export_dir(store, args.dir, "published" if args.published else "latest")
    print(f"{len(written)} policies written to {args.dir}")
    return 0


async def _watch(store: PolicyStore, args: argparse.Namespace) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    print(f"watching {args.dir} (Ctrl-C stops)", file=sys.stderr)
    await watch_dir(store, args.dir, author=_author(args.author), stop=stop)
    return 0


async def _history(store: PolicyStore, args: argparse.Namespace) -> int:
    infos = await store.history(args.id)
    if not infos:
        print(f"no policy {args.id!r}", file=sys.stderr)
        return 1
    for i in infos:
        when = datetime.fromtimestamp(i.created_at, UTC).strftime("%Y-%m-%d %H:%M:%S")
        print(f"{i.label():<28} {i.status:<9} {when}Z  {i.author:<12} {i.sha256[:12]}  {i.message}")
    return 0


async def _show(store: PolicyStore, args: argparse.Namespace) -> int:
    if args.version:
        record = await store.get_version(args.id, args.version)
    else:
        record = await store.get(args.id, "published")
    sys.stdout.write(record.content)
    return 0


async def _diff(store: PolicyStore, args: argparse.Namespace) -> int:
    sys.stdout.write(await store.diff(args.id, args.old, args.new))
    return 0


async def _publish(store: PolicyStore, args: argparse.Namespace) -> int:
    return await _new_version(store, args, store.publish)


async def _rollback(store: PolicyStore, args: argparse.Namespace) -> int:
    return await _new_version(store, args, store.rollback)


async def _new_version(store: PolicyStore, args: argparse.Namespace, action: Callable[..., Any]) -> int:
    record = await action(
        args.id, args.version, author=_author(args.author), base_version=args.base, message=args.message
    )
    print(f"{record.label()} {record.status} (content of version {args.version})")
    return 0


_COMMANDS: dict[str, Callable[[PolicyStore, argparse.Namespace], Awaitable[int]]] = {
    "import": _import,
    "export": _export,
    "watch": _watch,
    "history": _history,
    "show": _show,
    "diff": _diff,
    "publish": _publish,
    "rollback": _rollback,
}
