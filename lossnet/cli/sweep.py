"""``lossnet sweep run|status|report|export``: experiment grids into a results store.

Examples:
    lossnet sweep run mini --db lossnet-out/sweep/results.sqlite
    lossnet sweep run my-grid.toml --db results.sqlite --executor processes --workers 4
    lossnet sweep run pihlgren --db pihlgren.sqlite --executor ray --address auto \\
        --set similarity.data=/data/bapps
    lossnet sweep status mini --db lossnet-out/sweep/results.sqlite --json
    lossnet sweep report mini --db lossnet-out/sweep/results.sqlite --out lossnet-out/sweep/report
    lossnet sweep export --db results.sqlite --csv results.csv --parquet results.parquet

Running ``sweep run`` again after any interruption finishes what is missing; finished runs are
never redone. ``sweep export`` never writes over its results store, nor over an existing file
that is not one of its own exports (a CSV whose header starts with the export's columns, a
Parquet file with ``lossnet.sweep_export`` metadata) unless ``--force``.
"""
from __future__ import annotations

import argparse
import sys


def _spec_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("spec", metavar="SPEC",
                   help="a sweep spec file (TOML) or a ready-made spec: mini, pihlgren, kumar-out-of-the-box, "
                        "kumar-mini, kumar-defaults, kumar-width, kumar-weight-decay, ... (see lossnet/sweeps/specs)")
    p.add_argument("--db", required=True, help="the results store (an SQLite file; created if absent)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="TASK.KEY=VALUE",
                   help="override a task setting, e.g. --set similarity.data=/data/bapps (repeatable; changes run ids)")


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "sweep", help="run experiment grids (architectures x points x distances x tasks x seeds) into a results store",
        description="Expand a sweep spec into runs with stable ids, run what the results store has not finished "
                    "(in-process, in local worker processes, or on Ray), and report study-style tables and figures.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n"
               "  lossnet sweep run mini --db lossnet-out/sweep/results.sqlite\n"
               "  lossnet sweep status mini --db lossnet-out/sweep/results.sqlite --json\n"
               "  lossnet sweep report mini --db lossnet-out/sweep/results.sqlite --out lossnet-out/sweep/report\n"
               "  lossnet sweep export --db lossnet-out/sweep/results.sqlite --csv results.csv\n")
    sub = p.add_subparsers(dest="sweep_command", metavar="ACTION")
    p.set_defaults(func=lambda args: (p.print_help(), 2)[1])

    run = sub.add_parser("run", help="run every run of SPEC that --db has not finished")
    _spec_args(run)
    run.add_argument("--executor", default="inprocess", choices=("inprocess", "processes", "ray"),
                     help="inprocess (default), processes (local workers) or ray")
    run.add_argument("--workers", type=int, default=None,
                     help="worker processes for --executor processes (default 2); runs in flight for ray "
                          "(default: what the cluster's CPUs fit, x2); not for inprocess")
    run.add_argument("--no-share", action="store_true",
                     help="score every run from its own pass (by default, similarity runs of one network, weights, "
                          "data and size share one pass)")
    run.add_argument("--address", default=None, help="Ray cluster address (auto, ray://host:10001); default: local")
    run.add_argument("--retry-failed", action="store_true", help="run failed runs again")
    run.add_argument("--work-dir", default=None,
                     help="where runs keep checkpoints (default: <db folder>/<db name>-runs)")
    run.add_argument("--limit", type=int, default=None, help="run at most this many missing runs")
    run.add_argument("--stale-after", type=float, default=None,
                     help="seconds without a heartbeat before another host's running run is taken over (default 600)")
    run.add_argument("--quiet", action="store_true", help="no per-run progress lines")
    run.add_argument("--json", action="store_true", help="print the summary as JSON")
    run.set_defaults(func=cmd_run)

    status = sub.add_parser("status", help="how far SPEC got in --db: finished, failed (with errors), running, pending")
    _spec_args(status)
    status.add_argument("--json", action="store_true", help="print JSON (total, finished, failed, running, pending, "
                                                            "failures with their errors, ...)")
    status.set_defaults(func=cmd_status)

    report = sub.add_parser(
        "report", help="Markdown + HTML report with study-style tables and PNG figures",
        description="Write the report of SPEC from --db. Classifier runs (the Kumar et al. study) get the "
                    "classifier-study report (accuracy vs PS with the Pareto frontier, Table 1, PS along training, "
                    "best-PS checkpoint per run); a spec that also has other tasks gets both, the classifier one "
                    "in OUT/classifier.")
    _spec_args(report)
    report.add_argument("--out", required=True, help="output folder (report.md, report.html, report.json, figures/)")
    report.set_defaults(func=cmd_report)

    export = sub.add_parser(
        "export", help="export every run of --db to CSV and/or Parquet",
        description="Write every run of the results store to CSV and/or Parquet (atomically). An export never "
                    "writes over its results store; an existing OUT is replaced only when it is an export written "
                    "by this command (CSV: its header starts with the export's columns; Parquet: it carries "
                    "'lossnet.sweep_export' schema metadata), or with --force.")
    export.add_argument("--db", required=True, help="the results store")
    export.add_argument("--csv", default=None, metavar="OUT", help="write a CSV file")
    export.add_argument("--parquet", default=None, metavar="OUT", help="write a Parquet file (needs pyarrow)")
    export.add_argument("--force", action="store_true",
                        help="replace an existing OUT that is not a lossnet sweep export (never the store itself)")
    export.set_defaults(func=cmd_export)


def cmd_run(args: argparse.Namespace) -> int:
    from ..sweeps.runner import run_sweep
    from ..sweeps.store import DEFAULT_STALE_AFTER
    from ..utils.jsonio import to_json_text

    summary = run_sweep(args.spec, args.db, executor=args.executor, workers=args.workers, address=args.address,
                        retry_failed=args.retry_failed, work_root=args.work_dir, overrides=args.overrides,
                        stale_after=args.stale_after if args.stale_after is not None else DEFAULT_STALE_AFTER,
                        progress=not args.quiet, limit=args.limit, share=not args.no_share)
    if args.json:
        print(to_json_text(summary))
    else:
        print(f"{summary['spec']}: {summary['finished']}/{summary['total']} finished, {summary['failed']} failed, "
              f"{summary['running']} running, {summary['pending']} pending -> {summary['db']}")
        for f in summary["failures"][:20]:
            print(f"  FAILED {f['id']} {f['task']} {f['arch'] or 'pixel'} {f['label']} {f['distance']}: {f['error']}")
        if summary["failed"]:
            print("  (see 'lossnet sweep status ... --json' for tracebacks; --retry-failed runs them again)")
    return 1 if summary["failed"] else 0


def cmd_status(args: argparse.Namespace) -> int:
    from ..sweeps.runner import format_status, sweep_status
    from ..utils.jsonio import to_json_text

    status = sweep_status(args.spec, args.db, overrides=args.overrides)
    if args.json:
        print(to_json_text(status))
    else:
        print(format_status(status))
    return 0


def classifier_runs(spec: str, db: str, overrides: list[str]) -> tuple[int, int]:
    """``(classifier runs of SPEC in the store, runs of SPEC of other tasks)``: what ``sweep report`` dispatches on."""
    from pathlib import Path

    from ..sweeps.spec import expand, load_spec
    from ..sweeps.store import ResultsStore

    runs = expand(load_spec(spec, overrides))
    ids = [r.id for r in runs if r.task == "classifier"]
    if not ids or not Path(db).expanduser().is_file():
        return 0, len(runs) - len(ids)
    with ResultsStore(db) as store:
        return len(store.records(ids)), len(runs) - len(ids)


def cmd_report(args: argparse.Namespace) -> int:
    from pathlib import Path

    n_classifier, n_other = classifier_runs(args.spec, args.db, args.overrides)
    out = Path(args.out)
    if n_other or not n_classifier:
        from ..report.study import build_report

        result = build_report(args.spec, args.db, out, overrides=args.overrides)
        st = result["data"]["status"]
        print(f"report of {result['data']['spec']} ({st['finished']}/{st['total']} runs finished): "
              f"{result['markdown']}, {result['html']}, {len(result['figures'])} figures")
    if n_classifier:
        from ..report.classifier_study import build_classifier_report

        where = out / "classifier" if n_other else out  # a spec of several tasks: both reports
        result = build_classifier_report(args.spec, args.db, where, overrides=args.overrides)
        data = result["data"]
        print(f"classifier study report of {data['spec']} ({data['runs']['finished']}/{data['runs']['total']} "
              f"classifier runs finished, {data['evaluations']} evaluations): {result['markdown']}, "
              f"{result['html']}, {len(result['figures'])} figures")
        for row in data["run_table"]:
            step = row["best_trained_ps_step"]
            print(f"  {row['network']} (seed {row['seed']}, {row['run_id']}): best PS "
                  f"{'-' if row['best_trained_ps'] is None else format(row['best_trained_ps'], '.2f')} at step "
                  f"{'-' if step is None else step}, final PS "
                  f"{'-' if row['ps'] is None else format(row['ps'], '.2f')}")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ..errors import LossnetError
    from ..sweeps.store import ResultsStore, same_file

    if not args.csv and not args.parquet:
        raise LossnetError("sweep export needs --csv OUT and/or --parquet OUT.")
    if args.csv and args.parquet and same_file(Path(args.csv), Path(args.parquet)):
        raise LossnetError(f"--csv and --parquet name the same file {args.csv!r}: give each its own.")
    if not Path(args.db).is_file():
        raise LossnetError(f"no results store at {args.db!r}: run 'lossnet sweep run SPEC --db {args.db}' first.")
    store = ResultsStore(args.db)
    targets = [(fmt, out) for fmt, out in (("csv", args.csv), ("parquet", args.parquet)) if out]
    for fmt, out in targets:  # every target is checked before anything is written
        store.check_export_target(out, fmt, force=args.force)
    n = store.counts()["total"]
    for fmt, out in targets:
        write = store.export_csv if fmt == "csv" else store.export_parquet
        print(f"wrote {n} runs to {write(out, force=args.force)}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    parser = argparse.ArgumentParser(prog="lossnet")
    register(parser.add_subparsers())
    ns = parser.parse_args()
    sys.exit(ns.func(ns))
