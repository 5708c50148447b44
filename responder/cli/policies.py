"""``responder policies …``: check, test, import, export, watch, history, show, diff, publish, rollback.

``check`` and ``test DIR`` work on files alone; the others use the versioned store in the Redis
of the settings (``REDIS_URL``, else the embedded server). ``test`` runs the policy test
suites (``DIR/tests/*.yaml``) through the real supervisor — the simulator's text model when
no ``OPENAI_API_KEY`` is set — and ``import`` and ``publish`` run them as a gate: a change that
makes a passing case fail is refused unless ``--force --reason "…"``.
"""

from __future__ import annotations

import argparse
import asyncio
import fnmatch
import getpass
import signal
import sys
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

from infra.logs import configure_logging
from infra.redact import secret_values
from infra.settings import Settings
from supervisor.policies import PolicyDocument
from supervisor.policy_files import ImportRefused, export_dir, import_dir, watch_dir
from supervisor.policy_format import Problem, check_dir, with_version
from supervisor.policy_store import PolicyStore, StoreError, UnknownVersion
from supervisor.policy_tests.cases import SuiteCase, check_suite_dir, read_suite_dir
from supervisor.policy_tests.report import FORMATS, gate_text, render
from supervisor.policy_tests.store import SUITE_DIR, SuiteRefused, SuiteStore
from supervisor.suite_record import MIN_REASON_CHARS, GateRecord

# Running cases needs the supervisor, the SDK and the simulator: imported by the commands that
# run them (test, import, publish), so that every other command starts as fast as before.


def add_policies_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = sub.add_parser("policies", help="policy documents: check, import, export, watch, history")
    cmds = parser.add_subparsers(dest="policies_command", required=True)
    check = cmds.add_parser("check", help="validate a directory of policy files; exit 1 on problems")
    check.add_argument("dir", nargs="?", type=Path, help="default: the configured policies_dir")
    _add_test_parser(cmds)
    imp = cmds.add_parser("import", help="save every changed file of DIR (and DIR/tests/) as a new version")
    imp.add_argument("dir", type=Path)
    imp.add_argument("--author", default=None)
    imp.add_argument("--message", default="import")
    _add_gate_arguments(imp)
    exp = cmds.add_parser(
        "export", help="write every policy's latest version to DIR as <id>.md, the suites to DIR/tests/"
    )
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
        if name == "publish":
            _add_gate_arguments(cmd)
    diff = cmds.add_parser("diff", help="unified diff between two versions of one policy")
    diff.add_argument("id")
    diff.add_argument("old", type=int)
    diff.add_argument("new", type=int)


def _add_test_parser(cmds: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    test = cmds.add_parser(
        "test", help="run the policy test suites through the supervisor; exit 1 on failures"
    )
    test.add_argument("dir", nargs="?", type=Path, help="policies and DIR/tests/ (default: policies_dir)")
    test.add_argument(
        "--set", choices=("published", "draft"), help="the store's published or draft set (its suites, "
        "unless DIR is given)"
    )  # fmt: skip
    test.add_argument("--repeat", type=_positive, default=1, help="runs per case, for pass rates")
    test.add_argument("--judge", action="store_true", help="grade rubric expectations with the model judge")
    test.add_argument("--format", choices=FORMATS, default="table")
    test.add_argument("--output", type=Path, help="write the report here instead of stdout")
    test.add_argument("--concurrency", type=_positive, default=8, help="cases in flight at once")
    test.add_argument("--min-pass-rate", type=_rate, default=1.0, help="a case passes at this share of runs")
    test.add_argument("--case", action="append", default=[], help="only case ids matching this glob")


def _add_gate_arguments(cmd: argparse.ArgumentParser) -> None:
    cmd.add_argument("--force", action="store_true", help="publish even if policy tests newly fail")
    cmd.add_argument("--reason", default=None, help="why (required with --force; kept with the version)")


def _rate(value: str) -> float:
    rate = float(value)
    if not 0.0 < rate <= 1.0:
        raise argparse.ArgumentTypeError("must be above 0 and at most 1")
    return rate


def _positive(value: str) -> int:
    number = int(value)
    if number < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return number


def run_policies(args: argparse.Namespace, settings: Settings) -> int:
    if args.policies_command == "check":
        return check(args.dir or settings.policies_dir)
    if args.policies_command in ("test", "import", "publish"):
        if getattr(args, "force", False) and len((args.reason or "").strip()) < MIN_REASON_CHARS:
            print(f"--force needs --reason: at least {MIN_REASON_CHARS} characters", file=sys.stderr)
            return 2
        _quiet_logs(args, settings)  # a suite run makes many decisions: no log line for each
    if args.policies_command == "test":
        return run_tests(args, settings)
    if args.policies_command in _GATED:
        command = _GATED[args.policies_command]
        return asyncio.run(_with_store(settings, lambda store: command(store, args, settings)))
    return asyncio.run(_with_store(settings, lambda store: _COMMANDS[args.policies_command](store, args)))


def _quiet_logs(args: argparse.Namespace, settings: Settings) -> None:
    if settings.log_level.upper() == "DEBUG":
        return
    configure_logging(
        settings.log_format, "WARNING", redact=settings.log_redact_pii,
        log_file=getattr(args, "log_file", None) or settings.log_file, secrets=secret_values(settings),
    )  # fmt: skip


def check(directory: Path) -> int:
    if not directory.is_dir():
        print(f"{directory}: not a directory", file=sys.stderr)
        return 2
    docs, problems = check_dir(directory)
    cases, suite_problems = check_suite_dir(directory / SUITE_DIR, {d.id for d in docs})
    _print_problems(directory, problems, suite_problems)
    if problems or suite_problems:
        print(f"{len(problems) + len(suite_problems)} problem(s) in {directory}", file=sys.stderr)
        return 1
    print(f"{len(docs)} policies OK: {', '.join(d.label() for d in docs)}")
    if cases:
        print(f"{len(cases)} test cases OK in {directory / SUITE_DIR}")
    return 0


def _print_problems(directory: Path, problems: list[Problem], suite_problems: list[Problem]) -> None:
    for problem in problems:
        print(f"{directory / problem.file}:{problem.line}: {problem.message}")
    for problem in suite_problems:
        print(f"{directory / SUITE_DIR / problem.file}:{problem.line}: {problem.message}")


# -- test -------------------------------------------------------------------------------------


def run_tests(args: argparse.Namespace, settings: Settings) -> int:
    """``policies test``: the files of DIR (policies and DIR/tests/), or the store's set."""
    if args.set is not None:
        return asyncio.run(_with_store(settings, lambda store: _test_store_set(store, args, settings)))
    directory: Path = args.dir or settings.policies_dir
    if not directory.is_dir():
        print(f"{directory}: not a directory", file=sys.stderr)
        return 2
    docs, problems = check_dir(directory)
    cases, suite_problems = check_suite_dir(directory / SUITE_DIR, {d.id for d in docs})
    if problems or suite_problems:
        _print_problems(directory, problems, suite_problems)
        return 1
    settings = settings.model_copy(update={"policies_dir": directory})  # the tools read DIR/data
    suite = {c.file: 0 for c in cases}
    return asyncio.run(_run_and_report(args, settings, cases, docs, target=f"{directory}/", suite=suite))


async def _test_store_set(store: PolicyStore, args: argparse.Namespace, settings: Settings) -> int:
    docs = await store.documents("published" if args.set == "published" else "latest")
    suites = SuiteStore(store.redis, store.prefix)
    if args.dir is not None:
        cases, problems = await asyncio.to_thread(check_suite_dir, args.dir / SUITE_DIR, {d.id for d in docs})
        if problems:
            _print_problems(args.dir, [], problems)
            return 1
        suite = {c.file: 0 for c in cases}
    else:
        cases, suite = await suites.cases(), await suites.versions()
    return await _run_and_report(args, settings, cases, docs, target=f"the {args.set} set", suite=suite)


async def _run_and_report(
    args: argparse.Namespace,
    settings: Settings,
    cases: list[SuiteCase],
    docs: list[PolicyDocument],
    *,
    target: str,
    suite: dict[str, int],
) -> int:
    if args.case:
        cases = [c for c in cases if any(fnmatch.fnmatchcase(c.id, pattern) for pattern in args.case)]
    if not cases:
        print("no test cases to run", file=sys.stderr)
        return 1
    from supervisor.policy_tests.runner import searchable
    from supervisor.policy_tests.setup import runner_from_settings

    progress = ProgressBar(sys.stderr) if sys.stderr.isatty() else None
    async with runner_from_settings(settings, judge=args.judge, concurrency=args.concurrency) as runner:
        report = await runner.run(
            cases, searchable(docs), target=target, suite=suite, repeat=args.repeat,
            min_pass_rate=args.min_pass_rate, progress=progress,
        )  # fmt: skip
    if progress is not None:
        progress.close()
    text = render(report, args.format)
    if args.output is not None:
        await asyncio.to_thread(args.output.write_text, text, encoding="utf-8")
        print(f"{report.passed}/{report.total} passed; report written to {args.output}", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return 0 if report.failed == 0 else 1


class ProgressBar:
    """``[#####-----] 12/40 runs, 1 failed`` on one line of a terminal (only used on a TTY)."""

    def __init__(self, stream: TextIO, width: int = 30) -> None:
        self.stream, self.width, self.shown = stream, width, False

    def __call__(self, done: int, total: int, failed: int) -> None:
        filled = self.width * done // max(total, 1)
        bar = "#" * filled + "-" * (self.width - filled)
        self.stream.write(f"\r[{bar}] {done}/{total} runs, {failed} failed")
        self.stream.flush()
        self.shown = True

    def close(self) -> None:
        if self.shown:
            self.stream.write("\n")
            self.stream.flush()


async def _with_store(settings: Settings, run: Callable[[PolicyStore], Awaitable[int]]) -> int:
    from infra.redis_server import connect_redis

    redis = await connect_redis(settings.redis_url, settings.redis_data_dir)
    try:
        return await run(PolicyStore(redis.client, settings.redis_prefix))
    except (ImportRefused, SuiteRefused) as exc:
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


async def _import(store: PolicyStore, args: argparse.Namespace, settings: Settings) -> int:
    """Policies and DIR/tests/ suites, all or nothing, behind the gate when the live set changes."""
    author = _author(args.author)
    docs, problems = await asyncio.to_thread(check_dir, args.dir, await store.ids())
    if problems:
        raise ImportRefused(problems)
    suites = SuiteStore(store.redis, store.prefix)
    texts, unreadable = await asyncio.to_thread(read_suite_dir, args.dir / SUITE_DIR)
    cases, suite_problems = await suites.check(texts, {d.id for d in docs})  # docs: may be new
    if unreadable or suite_problems:
        _print_problems(args.dir, [], unreadable + suite_problems)
        return 1
    from supervisor.policy_tests.gate import with_changes

    live = await store.documents("published")
    changed = [d for d in docs if d.status == "published" and not await _holds(store, d)]
    gate = None
    if changed:
        suite = {**await suites.versions(), **dict.fromkeys(texts, 0)}
        gate = await _gate(settings, cases, live, with_changes(live, changed), suite)
        refused = _refused(gate, args, author)
        if refused:
            return refused
    known = {d.id for d in docs}
    saved_suites = (
        await suites.import_texts(texts, author=author, message=args.message, also_known=known)
        if texts
        else []
    )
    if gate is not None:
        gate.suite = await suites.versions()  # the versions the import just stored
    results = await import_dir(store, args.dir, author=author, message=args.message, tests=gate)
    for r in results:
        print(f"{r.id}@{r.version} saved" if r.version else f"{r.id} unchanged")
    for t in saved_suites:
        name = f"{SUITE_DIR}/{t.name}.yaml"
        print(f"{name}@{t.version} saved" if t.version else f"{name} unchanged")
    return 0


async def _holds(store: PolicyStore, doc: PolicyDocument) -> bool:
    """Whether the store's latest version of ``doc`` already is this text."""
    try:
        latest = await store.get(doc.id)
    except UnknownVersion:
        return False
    return with_version(doc.content, latest.version) == latest.content


async def _gate(
    settings: Settings,
    cases: list[SuiteCase],
    live: list[PolicyDocument],
    candidate: list[PolicyDocument],
    suite: dict[str, int],
) -> GateRecord | None:
    from supervisor.policy_tests.gate import run_gate
    from supervisor.policy_tests.setup import runner_from_settings

    if not cases:
        print("no policy test suites stored: not gated", file=sys.stderr)
        return None
    async with runner_from_settings(settings) as runner:
        record, _, _ = await run_gate(runner, cases, live, candidate, suite=suite)
    return record


def _refused(gate: GateRecord | None, args: argparse.Namespace, author: str) -> int:
    """0 to go on (the gate passed, or --force with a reason: recorded); 1 when refused."""
    if gate is None:
        return 0
    if gate.blocked and not args.force:
        sys.stderr.write(gate_text(gate))
        print(
            f"refused: {len(gate.newly_failing)} policy test case(s) would newly fail. Fix the policy "
            'or the cases, or publish anyway with --force --reason "…"',
            file=sys.stderr,
        )
        return 1
    if gate.blocked:
        gate.override_by, gate.override_reason = author, args.reason.strip()
    sys.stdout.write(gate_text(gate))
    return 0


async def _export(store: PolicyStore, args: argparse.Namespace) -> int:
    written = await export_dir(store, args.dir, "published" if args.published else "latest")
    print(f"{len(written)} policies written to {args.dir}")
    suites = await SuiteStore(store.redis, store.prefix).export_dir(args.dir / SUITE_DIR)
    if suites:
        print(f"{len(suites)} test suites written to {args.dir / SUITE_DIR}")
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
        tests = f"  [{i.tests.summary()}]" if i.tests is not None else ""
        print(f"{i.label():<28} {i.status:<9} {when}Z  {i.author:<12} {i.sha256[:12]}  {i.message}{tests}")
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


async def _publish(store: PolicyStore, args: argparse.Namespace, settings: Settings) -> int:
    """Publish behind the gate: the latest suites on the set this publish makes live."""
    from supervisor.policy_tests.gate import publish_candidate

    author = _author(args.author)
    live, candidate = await publish_candidate(store, args.id, args.version)
    suites = SuiteStore(store.redis, store.prefix)
    gate = await _gate(settings, await suites.cases(), live, candidate, await suites.versions())
    refused = _refused(gate, args, author)
    if refused:
        return refused
    record = await store.publish(
        args.id, args.version, author=author, base_version=args.base, message=args.message, tests=gate
    )
    print(f"{record.label()} {record.status} (content of version {args.version})")
    return 0


async def _rollback(store: PolicyStore, args: argparse.Namespace) -> int:
    return await _new_version(store, args, store.rollback)


async def _new_version(store: PolicyStore, args: argparse.Namespace, action: Callable[..., Any]) -> int:
    record = await action(
        args.id, args.version, author=_author(args.author), base_version=args.base, message=args.message
    )
    print(f"{record.label()} {record.status} (content of version {args.version})")
    return 0


_COMMANDS: dict[str, Callable[[PolicyStore, argparse.Namespace], Awaitable[int]]] = {
    "export": _export,
    "watch": _watch,
    "history": _history,
    "show": _show,
    "diff": _diff,
    "rollback": _rollback,
}
_GATED: dict[str, Callable[[PolicyStore, argparse.Namespace, Settings], Awaitable[int]]] = {
    "import": _import,
    "publish": _publish,
}
