"""The `cancel-rules` command line: decide, rules (and the batch, verify, diff, serve and test commands)."""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import TYPE_CHECKING

from .errors import CancelRulesError, InputError, OrderError, UsageError

if TYPE_CHECKING:
    from .policy import Policy

# The engine's modules (pandas, pyarrow, durable_rules under them) are imported by the commands that use them,
# not here: `--help` and a mistyped command answer without them.


class Terminated(BaseException):
    """SIGTERM or SIGHUP, raised where the program is (as Ctrl-C raises KeyboardInterrupt) so that temp files
    are removed on the way out; exit status 128 + the signal's number."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum

    def __str__(self) -> str:
        return f"terminated ({signal.Signals(self.signum).name})"


INTERNAL_ERROR = 70  # EX_SOFTWARE (sysexits.h): a bug, not the input


_received: list[int] = []  # the signals unwind_on_termination raised, latest last


@contextmanager
def unwind_on_termination() -> Iterator[None]:
    """SIGTERM and SIGHUP raise Terminated while inside, SIGINT KeyboardInterrupt as ever (only in the main thread,
    where handlers run), each noted in _received: a library that catches BaseException (durable_rules does, in its
    action callbacks) may hand the signal on as another error. A signal the parent set to be ignored (nohup) stays
    ignored; the handlers before are restored on the way out."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    signums = [s for s in (signal.SIGTERM, getattr(signal, "SIGHUP", None))
               if s is not None and signal.getsignal(s) == signal.SIG_DFL]

    def terminate(signum: int, frame: object) -> None:
        _received.append(signum)
        for s in signums:  # a second signal must not cut the cleanup short
            signal.signal(s, signal.SIG_IGN)
        raise Terminated(signum)

    def interrupt(signum: int, frame: object) -> None:
        _received.append(signum)
        raise KeyboardInterrupt

    previous = {s: signal.signal(s, terminate) for s in signums}
    if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
        previous[signal.SIGINT] = signal.signal(signal.SIGINT, interrupt)
    _received.clear()
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


def _policy(args: argparse.Namespace) -> Policy:
    from .policy import load

    return load(args.policy)


def parse_as_of(value: str | None) -> datetime:
    from .facts import parse_as_of as parse

    return parse(value)


def cmd_decide(args: argparse.Namespace) -> int:
    try:
        order = json.loads(sys.stdin.read() if args.json == "-" else args.json)
    except json.JSONDecodeError as exc:
        raise UsageError(f"--json is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}",
                         "--json") from None
    except RecursionError:  # json's decoder recurses once per bracket
        raise UsageError("--json is not valid JSON: nested too deeply", "--json") from None
    if not isinstance(order, dict):
        raise UsageError("--json must be a JSON object of order facts", "--json")
    decision = _policy(args).decide(order, as_of=parse_as_of(args.as_of), strict=args.strict)
    print(decision.explain() if args.text else decision.to_json())
    return 0 if decision.action else 1


def cmd_rules(args: argparse.Namespace) -> int:
    policy = _policy(args)
    rows = policy.rules_table()
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    headers = ["id", "priority", "when", "action"]
    widths = [max(len(h), *(len(r[h]) for r in rows)) for h in headers]
    print(f"{policy.name} {policy.version} (hit policy {policy.spec.hit_policy}, {len(rows)} rules)")
    for row in [dict(zip(headers, headers, strict=True)), *rows]:
        print("  ".join(row[h].ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip())
    return 0


def _max_columns(args: argparse.Namespace) -> int:
    from .csvio import max_columns_from_env

    if args.max_columns is None:
        return max_columns_from_env()
    if args.max_columns < 1:
        raise UsageError(f"--max-columns must be a positive integer, got {args.max_columns}", "--max-columns")
    return args.max_columns


def cmd_evaluate(args: argparse.Namespace) -> int:
    args.max_columns = _max_columns(args)
    if args.dask is not None:
        return _evaluate_on_dask(args)
    from .csvio import DEFAULT_CHUNKSIZE, evaluate_csv, terminal_progress

    policy = _policy(args)
    as_of = parse_as_of(args.as_of)
    mapping = _mapping(args, policy)
    progress = terminal_progress()
    chunksize = DEFAULT_CHUNKSIZE if args.chunksize is None else args.chunksize
    try:
        summary = evaluate_csv(policy.compiled, args.input, args.output, as_of, chunksize, progress,
                               max_columns=args.max_columns, raw=args.raw_csv, strict=args.strict, mapping=mapping,
                               delimiter=args.delimiter)
    finally:
        if progress:  # the bar's line ends before the summary or the error
            sys.stderr.write("\n")
    summary.rules_declared = tuple(r.id for r in policy.spec.ranked_rules())
    print(f"wrote {args.output} (policy {policy.name} {policy.version}, as of {as_of.isoformat()})\n{summary}",
          file=sys.stderr)
    return 0


def _mapping(args: argparse.Namespace, policy: Policy) -> dict[str, str]:
    """--map COLUMN=FIELD (repeatable), checked against the policy's fields."""
    from .intake import check_fields, parse_mapping

    mapping = parse_mapping(args.map or [])
    check_fields(policy.spec, mapping)
    return mapping


def _evaluate_on_dask(args: argparse.Namespace) -> int:
    """`evaluate IN -o OUT --dask [ADDRESS] [--output-format csv|csv-folder|parquet]`."""
    try:
        import dask.dataframe  # noqa: F401
        import distributed  # noqa: F401

        from .cluster import run_evaluate
    except ImportError as exc:
        raise UsageError(f"--dask needs the [dask] extra: pip install 'cancel-rules[dask]' ({exc})",
                         "--dask") from None
    if args.map:
        raise UsageError("--map is not supported with --dask: rename the columns of the input files", "--map")
    if args.delimiter != ",":
        raise UsageError("--delimiter is not supported with --dask: the input files must be comma-separated",
                         "--delimiter")
    from .csvio import terminal_progress

    policy = _policy(args)
    as_of = parse_as_of(args.as_of)
    progress = terminal_progress()
    try:
        run = run_evaluate(policy.compiled, args.input, args.output, as_of, address=args.dask,
                           fmt=args.output_format, max_columns=args.max_columns, strict=args.strict,
                           raw=args.raw_csv, progress=progress)
    finally:
        if progress:  # the bar's line ends before the summary or the error
            sys.stderr.write("\n")
    run.summary.rules_declared = tuple(r.id for r in policy.spec.ranked_rules())
    print(f"wrote {args.output} ({run.fmt}, {run.partitions} partitions on {run.workers} Dask workers; policy "
          f"{policy.name} {policy.version}, as of {as_of.isoformat()})\n{run.summary}", file=sys.stderr)
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    report = _policy(args).verify()
    print(json.dumps(report.to_dict(), indent=2, default=str) if args.json else report)
    return 0 if report.ok else 1


def cmd_diff(args: argparse.Namespace) -> int:
    from .csvio import read_orders
    from .policy import diff, load

    old, new = load(args.old), load(args.new)
    orders = read_orders(args.orders, mapping=_mapping(args, old)) if args.orders else None
    result = diff(old, new, orders, parse_as_of(args.as_of))
    print(json.dumps(result.to_dict(), indent=2, default=str) if args.json else result)
    return 0


def _write_text(target: str, text: str) -> None:
    """Write text to target, whole or not at all (atomic_file); '-' is stdout."""
    if target == "-":
        sys.stdout.write(text)
        return
    from pathlib import Path

    from .atomic import atomic_file
    from .tabular import write_reason

    try:
        with atomic_file(Path(target)) as sink:
            sink.write(text.encode("utf-8"))
    except OSError as exc:
        raise InputError(target, write_reason(exc)) from None


def cmd_export(args: argparse.Namespace) -> int:
    doc = _policy(args).to_jdm()
    _write_text(args.output, json.dumps(doc, indent=2, ensure_ascii=False) + "\n")
    return 0


def cmd_import(args: argparse.Namespace) -> int:
    from .policy import import_jdm
    from .tabular import read_reason

    try:
        with open(args.input, "rb") as handle:
            data = handle.read()
    except OSError as exc:
        raise InputError(args.input, read_reason(exc)) from None
    result = import_jdm(data, args.input)
    _write_text(args.output, result.yaml)
    for warning in result.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    if args.output != "-":
        print(f"wrote {args.output} (policy {result.policy.name} {result.policy.version}, "
              f"{len(result.policy.spec.rules)} rules)", file=sys.stderr)
    return 0


def cmd_test(args: argparse.Namespace) -> int:
    """`test CASES.csv [--junit OUT.xml]`: exit 0 when every case passes, 1 when one fails, 2 on bad input."""
    from .scenarios import read_cases

    policy = _policy(args)
    report = policy.test_report(read_cases(args.cases), as_of=parse_as_of(args.as_of))
    if args.junit:
        report.write_junit(args.junit)
    print(report)
    return report.exit_code


def cmd_serve(args: argparse.Namespace) -> int:
    try:
        from .service import serve
    except ImportError as exc:
        raise UsageError(f"the service needs the [service] extra: pip install 'cancel-rules[service]' "
                         f"({exc})") from None
    return serve(args)


MAP_HELP = ("read input column COLUMN as the policy's field FIELD, e.g. --map \"Order Status=status\" "
            "(repeatable; the output names it FIELD)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cancel-rules", description=__doc__)
    parser.add_argument("--debug", action="store_true", help="let errors end in their traceback (for bug reports)")
    sub = parser.add_subparsers(dest="command", required=True)

    def command(name: str, func, help: str, as_of: bool = False) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help, description=help)
        p.add_argument("--policy", metavar="PATH", help="policy YAML file (default: the bundled policy)")
        if as_of:
            p.add_argument("--as-of", metavar="ISO", help="time that elapsed hours/days are counted to "
                                                           "(ISO 8601; default: now, UTC)")
        p.set_defaults(func=func)
        return p

    p = command("decide", cmd_decide, "decide one order given as JSON", as_of=True)
    p.add_argument("--json", required=True, metavar="JSON", help="the order as a JSON object ('-': stdin)")
    p.add_argument("--text", action="store_true", help="print the explanation as text instead of JSON")
    p.add_argument("--strict", action="store_true",
                   help="a field the policy does not read is an error (else a warning of the decision)")
    p = command("evaluate", cmd_evaluate, "decide every order of a CSV; writes the rows with decision columns",
                as_of=True)
    p.add_argument("input", help="orders CSV (UTF-8, with or without BOM)")
    p.add_argument("-o", "--output", required=True, help="output CSV (written only when complete)")
    p.add_argument("--chunksize", type=int, default=None, help="rows per chunk (memory stays flat)")
    p.add_argument("--max-columns", type=int, default=None, metavar="N",
                   help="refuse an input with more columns (default: $CANCEL_RULES_MAX_COLUMNS, else 1000)")
    p.add_argument("--strict", action="store_true",
                   help="a column that looks like a misspelt field (did you mean ...) is an error, before anything is "
                        "written (else a warning in the summary; other unknown columns are kept either way)")
    p.add_argument("--raw-csv", action="store_true",
                   help="write text cells as they are (by default a cell a spreadsheet would run as a formula, "
                        "starting with = + - @ tab or CR and not a number, gets a leading ')")
    p.add_argument("--map", action="append", metavar="COLUMN=FIELD", help=MAP_HELP)
    p.add_argument("--delimiter", default=",", metavar="SEP", help="the input's field separator: , ; | tab, or auto "
                   "(sniffed from its first lines); default , (the output is always comma-separated)")
    p.add_argument("--dask", nargs="?", const="local", default=None, metavar="SCHEDULER_ADDRESS",
                   help="evaluate on Dask (needs the [dask] extra): on the scheduler at this address, or without "
                        "one on a local cluster of 2 worker processes; IN may then be a glob of CSVs or Parquet")
    p.add_argument("--output-format", choices=("csv", "csv-folder", "parquet"), default=None,
                   help="with --dask: one CSV (default), a folder of CSV parts, or a folder of Parquet parts "
                        "(default parquet when OUT ends in .parquet)")
    p = command("verify", cmd_verify, "check the policy over its whole fact space: gaps, unreachable rules, "
                                      "overlaps (exit 1 when not OK)")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p = sub.add_parser("diff", help="compare two policies cell by cell (and over orders)",
                       description="compare two policies cell by cell (and over orders)")
    p.add_argument("old", help="the current policy file")
    p.add_argument("new", help="the changed policy file")
    p.add_argument("--orders", metavar="CSV", help="weigh the changes by these orders")
    p.add_argument("--map", action="append", metavar="COLUMN=FIELD", help=MAP_HELP)
    p.add_argument("--as-of", metavar="ISO", help="time for the orders' timestamps (default: now, UTC)")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_diff)
    p = command("serve", cmd_serve, "serve the policy as an HTTP JSON API (needs the [service] extra)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default: 127.0.0.1, this machine only)")
    p.add_argument("--port", type=int, default=8000, help="port (default: 8000)")
    p.add_argument("--workers", type=int, default=1, help="worker processes (default: 1)")
    p.add_argument("--token-file", metavar="PATH", help="file holding the bearer token (else $CANCEL_RULES_TOKEN)")
    p = command("export", cmd_export, "write the policy as a GoRules JDM decision table (ZEN runs it on normalized "
                                      "facts: see Policy.normalize)")
    p.add_argument("--format", required=True, choices=("jdm",), help="the format to write")
    p.add_argument("-o", "--output", default="-", help="output file (default: stdout)")
    p = sub.add_parser("import", help="turn a GoRules JDM decision table into a policy YAML file",
                       description="turn a GoRules JDM decision table into a policy YAML file (checked by loading "
                                   "it); what the rule language cannot express is an error naming its row and column")
    p.add_argument("input", help="the JDM file (JSON)")
    p.add_argument("--format", required=True, choices=("jdm",), help="the format to read")
    p.add_argument("-o", "--output", default="-", help="output YAML file (default: stdout)")
    p.set_defaults(func=cmd_import)
    p = command("rules", cmd_rules, "print the policy's rules as a table, in firing order")
    p.add_argument("--json", action="store_true", help="print JSON rows instead of a table")
    p = command("test", cmd_test, "run test cases: orders with the action (and rule) each expects; prints the "
                                  "failures and the rules' coverage (exit 1 when a case fails)", as_of=True)
    p.add_argument("cases", help="CSV of cases: order columns plus expected_action (optional expected_rule, case, "
                                 "as_of: the time a case is judged at, else --as-of)")
    p.add_argument("--junit", metavar="OUT.xml", help="also write JUnit XML, one testcase per case")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "serve":  # uvicorn handles the signals of a server (and dies by them when done)
            return args.func(args)
        with unwind_on_termination():
            return args.func(args)
    except KeyboardInterrupt:
        return _signalled(args.command, signal.SIGINT)
    except Terminated as exc:
        return _signalled(args.command, exc.signum)
    except BrokenPipeError:  # the reader went away (`| head`): nothing to tell it, and not a bug
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # so that the exit's flush raises nothing
        return 128 + signal.SIGPIPE
    except Exception as exc:
        if _received and not args.debug:  # the signal, handed on as another error by a library that caught it
            return _signalled(args.command, _received[-1])
        return _failed(args, exc)


def _signalled(command: str, signum: int) -> int:
    said = "interrupted (SIGINT)" if signum == signal.SIGINT else str(Terminated(signum))
    print(f"cancel-rules {command}: {said}", file=sys.stderr)
    return 128 + signum


def _failed(args: argparse.Namespace, exc: Exception) -> int:
    """A domain error's exit status, said in one line (a policy with problems lists every one of them, each on its
    own path:line:col line); anything else is a bug: 70, said so in one line."""
    if args.debug:
        raise exc
    if isinstance(exc, CancelRulesError):
        what = "invalid order: " if isinstance(exc, OrderError) else ""
        print(f"cancel-rules {args.command}: {what}{exc}", file=sys.stderr)
        return exc.exit_code
    text = " ".join(f"{type(exc).__name__}: {exc}".split())
    print(f"cancel-rules {args.command}: internal error: {text} (run with --debug for the traceback)",
          file=sys.stderr)
    return INTERNAL_ERROR


if __name__ == "__main__":
    sys.exit(main())
