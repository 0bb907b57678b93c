"""Command line: ``deeplinear run | list | sweep | report | info``.

``deeplinear run`` (= ``deeplinear run parsimony``) reproduces the paper's Figure 1 with its
checks; ``deeplinear list`` shows every experiment with its fields; ``deeplinear sweep`` runs
a grid of configs on a local process pool or a Dask cluster; ``deeplinear report`` runs every
experiment and writes ``report.md`` and a self-contained ``report.html``.  The experiments
themselves live in :mod:`deeplinear.experiments`, one module each.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import sys
from typing import Any

DEFAULT_EXPERIMENT = "parsimony"


def _build_parser() -> argparse.ArgumentParser:
    from .experiments import names

    parser = argparse.ArgumentParser(prog="deeplinear", description=__doc__.splitlines()[0],
                     epilog="`deeplinear COMMAND --help` for a command's options")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    def config_options(p: argparse.ArgumentParser) -> None:
        p.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                       help="set a config field (repeatable); parsed by the field's type "
                            "(`deeplinear list` shows the fields)")
        p.add_argument("--config", metavar="FILE.toml",
                       help="config fields from a TOML file (a table named after the experiment, else the "
                            "top-level keys); --set wins")
        p.add_argument("--seed", type=_nonnegative_int, default=None,
                       help="shortcut for --set seed=N")
        p.add_argument("--quick", action="store_true",
                       help="the experiment's small config (seconds; a smoke test)")
        p.add_argument("--quiet", action="store_true",
                       help="no progress bars, no log: only the result line (and failed checks)")

    run = sub.add_parser("run", help=f"run an experiment (default: {DEFAULT_EXPERIMENT})",
                         description="Run one experiment into a fresh folder OUT/NAME-TIMESTAMP.")
    run.add_argument("experiment", nargs="?", default=DEFAULT_EXPERIMENT, metavar="NAME",
                     help=f"one of {', '.join(names())} (default: {DEFAULT_EXPERIMENT}; "
                          f"`deeplinear list` describes them)")
    config_options(run)
    run.add_argument("--out", default="results", help="base folder of the results (default: results)")
    run.add_argument("--threads", type=_positive_int, default=None,
                     help="core threads for this run (default: the experiment's, else the library's)")
    run.add_argument("--no-progress", action="store_true", help="no progress bars")

    sub.add_parser("list", help="every experiment with its description and fields",
                   description="Every registered experiment: name, description, config fields.")

    sw = sub.add_parser("sweep", help="run an experiment over a grid of configs",
                        description="Run a grid of configs on a local process pool (one core "
                                    "thread per worker) or a Dask cluster; one row per run in "
                                    "OUT/sweep.csv and sweep.parquet, each run's files in "
                                    "OUT/<config hash>/; rerunning skips finished runs.")
    sw.add_argument("experiment", metavar="NAME")
    sw.add_argument("--grid", action="append", default=[], metavar="FIELD=V1,V2",
                    help="values of a field (repeatable): comma-separated, or a range A:B[:STEP] "
                         "of integers (end excluded), e.g. --grid width=50,100 --grid seed=0:5")
    config_options(sw)
    sw.add_argument("--out", default=None,
                    help="sweep folder (default: results/NAME-sweep; the same folder resumes)")
    sw.add_argument("--workers", type=_positive_int, default=None,
                    help="local worker processes (default: the number of cores)")
    sw.add_argument("--scheduler", metavar="ADDRESS", default=None,
                    help="run on this Dask distributed scheduler (e.g. tcp://host:8786)")

    rep = sub.add_parser("report", help="run every experiment, write report.md and report.html",
                         description="Run every registered experiment and write report.md and "
                                     "a self-contained report.html (figures, checks, versions, "
                                     "machine, times) into OUT/report-TIMESTAMP.")
    rep.add_argument("--out", default="results", help="base folder (default: results)")
    rep.add_argument("--quick", action="store_true", help="every experiment at its quick() size")
    rep.add_argument("--only", action="append", default=None, metavar="NAME",
                     help="only these experiments (repeatable)")
    rep.add_argument("--quiet", action="store_true", help="no progress lines")

    sub.add_parser("info", help="how the core was built (BLAS backend, SIMD, threads)")
    return parser


def _positive_int(text: str) -> int:
    return _int_at_least(text, 1)


def _nonnegative_int(text: str) -> int:
    return _int_at_least(text, 0)


def _int_at_least(text: str, low: int) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if value < low:
        raise argparse.ArgumentTypeError(f"must be >= {low}, got {value}")
    return value


def main(argv: list[str | os.PathLike] | None = None) -> int:
    """Entry point of the ``deeplinear`` command (``argv`` default: ``sys.argv[1:]``).

    Returns the exit status: 0 when every check passed, 1 when a check failed (or a run
    diverged or raised); usage errors exit with 2 (``SystemExit``)."""
    parser = _build_parser()
    args, extra = parser.parse_known_args(None if argv is None else [os.fspath(a) for a in argv])
    if extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    if args.command is None:
        parser.error("missing command: one of run, list, sweep, report, info "
                     "(`deeplinear run` reproduces the paper's Figure 1)")
    from .experiments import ConfigError, MissingRequirement

    try:
        return {"run": _run, "list": _list, "sweep": _sweep, "report": _report,
                "info": _info}[args.command](args, parser)
    except (ConfigError, MissingRequirement) as e:
        parser.error(str(e))
    except KeyboardInterrupt:
        # no result of a partial run is reported (nor checked); a sweep keeps its finished runs
        print("deeplinear: interrupted", file=sys.stderr)
        return 130
    return 2  # not reached


def _config(args: argparse.Namespace):
    """The experiment's config from defaults, --quick, --config, --set and --seed (in order),
    checked once, as a whole (a field set by --config may need one set by --set)."""
    import dataclasses

    start, values = _config_values(args)
    return dataclasses.replace(start, **values)


def _config_values(args: argparse.Namespace):
    """``(start, values)``: the default (or --quick) config and the fields set by --config,
    --set and --seed (later wins), each parsed by its field's type but not yet checked
    together."""
    from .experiments import ConfigError, get

    cls = get(args.experiment)
    start = cls()
    if args.quick:
        start = start.quick()
    values: dict[str, Any] = {}
    if args.config:
        values.update(cls.parse_dict(_read_toml(args.config, cls.name)))
    if args.set:
        values.update(cls.parse_strings(args.set))
    if args.seed is not None:
        if "seed" not in cls.field_names():
            raise ConfigError(f"--seed: {cls.name} has no field 'seed'; fields: "
                              f"{', '.join(cls.field_names())}")
        values["seed"] = args.seed
    return start, values


def _read_toml(path: str, name: str) -> dict[str, Any]:
    from .experiments import ConfigError

    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover (3.9, 3.10)
        try:
            import tomli as tomllib
        except ImportError:
            raise ConfigError("--config: reading TOML needs Python >= 3.11 or the tomli package "
                              "(pip install tomli)") from None
    try:
        with open(path, "rb") as fh:
            data = tomllib.load(fh)
    except OSError as e:
        raise ConfigError(f"--config: cannot read {path}: {e.strerror or e}") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"--config: {path} is not valid TOML: {e}") from None
    # the table named after the experiment when there is one (alone: the top-level keys may be
    # another experiment's), else the top-level keys; the tables of other experiments are theirs
    # (one file can serve several), any other table is an unknown field
    if isinstance(data.get(name), dict):
        return data[name]
    from .experiments import names

    others = set(names()) - {name}
    return {k: v for k, v in data.items() if not (isinstance(v, dict) and k in others)}


def _stamped(base: str, name: str) -> str:
    """``base/name-YYYYmmdd-HHMMSS`` (with ``-1``, ``-2`` ... when taken)."""
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    path = os.path.join(base, f"{name}-{stamp}")
    i = 1
    while os.path.exists(path):
        path = os.path.join(base, f"{name}-{stamp}-{i}")
        i += 1
    return path


def _checked_out(parser: argparse.ArgumentParser, command: str, out: str) -> str:
    """``--out`` must be a folder that can be created and written: refused before any work."""
    from .experiments import prepare_out

    try:
        return prepare_out(out)
    except ValueError as e:
        parser.error(f"{command}: --{e}")
    return out  # not reached


def _run(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from .experiments import format_checks

    exp = _config(args)
    base = _checked_out(parser, "run", args.out)
    quiet = args.quiet
    res = exp.run(_stamped(base, exp.name), progress=not (quiet or args.no_progress),
                  verbose=not quiet, threads=args.threads)
    if quiet:
        failed = [c for c in res.checks if not c.passed]
        if failed:
            print(format_checks(failed))
        print(f"{res.name}: {res.status.upper()} ({sum(c.passed for c in res.checks)}/"
              f"{len(res.checks)} checks) in {res.elapsed:.1f} s -> {res.out}")
    return 0 if res.passed else 1


def _list(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from .experiments import registry

    for name, cls in registry().items():
        extra = f"  [needs: {', '.join(cls.requires)}]" if cls.requires else ""
        print(f"{name}: {cls.description}{extra}")
        fields = cls.fields()
        w = max((len(f.name) for f in fields), default=0)
        tw = max((len(f.type_name) for f in fields), default=0)
        for f in fields:
            print(f"    {f.name:<{w}}  {f.type_name:<{tw}}  = {f.default!r:<10}  {f.doc}")
        print()
    print("`deeplinear run NAME --set FIELD=VALUE` sets a field; --quick runs the small config.")
    return 0


def _parse_grid(cls, items: list[str]) -> dict[str, list]:
    from .experiments import ConfigError
    from .experiments._base import parse_value

    types = {f.name: f.type for f in cls.fields()}
    grid: dict[str, list] = {}
    for item in items:
        if "=" not in item:
            raise ConfigError(f"--grid {item!r}: expected FIELD=V1,V2 or FIELD=A:B")
        key, text = (s.strip() for s in item.split("=", 1))
        if key not in types:
            raise ConfigError(f"--grid: {cls.name} has no field {key!r}; valid fields: "
                              f"{', '.join(types)}")
        if _takes_int(types[key]) and ":" in text:
            try:
                bounds = [int(p) for p in text.split(":")]
                values: list = list(range(*bounds))
            except (ValueError, TypeError):
                raise ConfigError(f"--grid {key}: expected a range A:B[:STEP] of integers, got {text!r}") from None
        else:
            values = [parse_value(v, types[key], key) for v in text.split(",") if v.strip()]
        if not values:
            raise ConfigError(f"--grid {key}: no values in {text!r}")
        grid[key] = values
    if not grid:
        raise ConfigError("sweep: give at least one --grid FIELD=V1,V2")
    return grid


def _takes_int(tp: Any) -> bool:
    """``int`` or ``Optional[int]``: a field a ``--grid A:B`` range can fill."""
    import typing

    if tp is int:
        return True
    return typing.get_origin(tp) is typing.Union and int in typing.get_args(tp)


def _sweep(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from .experiments import ConfigError, get
    from .experiments._base import removed_if_left_empty
    from .experiments.sweep import grid_configs, sweep

    if args.workers is not None and args.scheduler is not None:
        raise ConfigError("--workers: only for the local pool, not with --scheduler (the "
                          "cluster's workers run the sweep)")
    cls = get(args.experiment)
    start, values = _config_values(args)
    grid = _parse_grid(cls, args.grid)
    # every grid point checked (with --set/--config/--seed; the base alone may be incomplete,
    # e.g. --set width=4 --grid rank=1,2 under a default rank of 5) before any folder is made
    grid_configs(cls, grid, base=values, quick=args.quick)
    out = args.out or os.path.join("results", f"{cls.name}-sweep")
    with removed_if_left_empty(out):  # e.g. an unreachable scheduler: no empty sweep folder left
        out = _checked_out(parser, "sweep", out)
        result = sweep(cls.name, grid, out=out, base=values, quick=args.quick,
                       executor=args.scheduler, workers=args.workers, progress=not args.quiet)
    print(result.describe())
    return 0 if result.n_failed == 0 and not result.interrupted else 1


def _report(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from .experiments import get
    from .experiments.report import report

    for name in args.only or []:
        get(name)  # unknown names: a usage error before any work
    base = _checked_out(parser, "report", args.out)
    rep = report(_stamped(base, "report"), quick=args.quick, names=args.only,
                 verbose=not args.quiet)
    print(f"report: {rep.summary_line()}\n  {rep.markdown}\n  {rep.html}")
    return 0 if rep.passed else 1


def _info(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    import deeplinear as dl

    print(json.dumps({"version": dl.__version__, "threads": dl.get_num_threads(),
                      **dl.build_info()}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
