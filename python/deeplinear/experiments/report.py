"""``deeplinear report``: every registered experiment, run and written up as ``report.md`` and a
self-contained ``report.html`` (figures embedded as base64 PNGs, each experiment's checks
table with PASS/FAIL, versions, machine, thread count, time per experiment).

It is the document to attach to a paper or a bug report.  An experiment that needs an optional
package that is not installed is listed as skipped with the reason; one that raises is listed
with its error (the others still run).
"""

from __future__ import annotations

import base64
import datetime as _dt
import html
import os
import time
import traceback
from dataclasses import dataclass, field
from typing import Any

from ._base import ExperimentResult, _write_json, environment, get, names as _names, prepare_out

__all__ = ["Report", "report"]


@dataclass
class Entry:
    """One experiment of the report."""

    name: str
    description: str
    status: str  # "ok", "failed", "diverged", "error", "skipped"
    elapsed: float = 0.0
    result: ExperimentResult | None = None
    reason: str = ""


@dataclass
class Report:
    """What :func:`report` returns: the entries and the two files written."""

    out: str
    markdown: str
    html: str
    entries: list[Entry] = field(default_factory=list)
    quick: bool = False

    @property
    def passed(self) -> bool:
        """Every experiment that ran passed its checks (skipped ones do not count)."""
        return all(e.status in ("ok", "skipped") for e in self.entries)

    def summary_line(self) -> str:
        counts: dict[str, int] = {}
        for e in self.entries:
            counts[e.status] = counts.get(e.status, 0) + 1
        total = sum(e.elapsed for e in self.entries)
        return (f"{len(self.entries)} experiments (" + ", ".join(f"{v} {k}" for k, v in sorted(counts.items()))
                + f") in {total:.1f} s")


def report(out: str | os.PathLike, *, quick: bool = False, names: list[str] | None = None,
           verbose: bool = True, progress: bool = False) -> Report:
    """Run every registered experiment (or ``names``) into ``out/<name>/`` and write
    ``out/report.md`` and ``out/report.html``.

    Parameters
    ----------
    out : str or path
        Report folder (created).
    quick : bool
        Every experiment at its ``quick()`` size (seconds each) instead of its default.
    names : list of str, optional
        Only these experiments.
    verbose : bool
        One line per experiment as it finishes.
    progress : bool
        The experiments' progress bars.
    """
    selected = [get(n).name for n in names] if names else _names()
    out = prepare_out(out)
    env = environment()
    entries = []
    for name in selected:
        cls = get(name)
        missing = cls.missing_requirements()
        if missing:
            entries.append(Entry(name, cls.description, "skipped",
                                 reason=f"needs {', '.join(missing)} (pip install {' '.join(missing)})"))
        else:
            exp = cls().quick() if quick else cls().for_report()
            start = time.perf_counter()
            try:
                res = exp.run(os.path.join(out, name), progress=progress, verbose=False)
                entries.append(Entry(name, cls.description, res.status, res.elapsed, res))
            except Exception as e:  # noqa: BLE001 (one experiment's error does not lose the report)
                entries.append(Entry(name, cls.description, "error", time.perf_counter() - start,
                                     reason=f"{type(e).__name__}: {e}\n{traceback.format_exc(limit=-4)}"))
        if verbose:
            e = entries[-1]
            checks = (f", {sum(c.passed for c in e.result.checks)}/{len(e.result.checks)} checks"
                      if e.result else "")
            print(f"{e.name:<20} {e.status.upper():<8} {e.elapsed:8.1f} s{checks}"
                  + (f"  ({e.reason.splitlines()[0]})" if e.reason else ""), flush=True)
    rep = Report(out, os.path.join(out, "report.md"), os.path.join(out, "report.html"), entries, quick)
    when = _dt.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    with open(rep.markdown, "w") as fh:
        fh.write(_markdown(rep, env, when))
    with open(rep.html, "w") as fh:
        fh.write(_html(rep, env, when))
    _write_json(os.path.join(out, "report.json"), {
        "quick": quick, "environment": env, "date": when,
        "experiments": [{"name": e.name, "status": e.status, "elapsed": e.elapsed, "reason": e.reason,
                         "checks": [c.to_dict() for c in e.result.checks] if e.result else []}
                        for e in entries]})
    return rep


# -- rendering ------------------------------------------------------------------------------------

def _env_rows(env: dict[str, Any]) -> list[tuple[str, str]]:
    build = env.get("build", {})
    return [("deeplinear", env["deeplinear"]), ("NumPy", env["numpy"]), ("Python", env["python"]),
            ("platform", env["platform"]), ("processor", str(env["processor"])),
            ("CPUs", str(env["cpu_count"])), ("core threads (library setting)", str(env["threads"])),
            ("core build", ", ".join(f"{k}={v}" for k, v in build.items()))]


def _threads(e: Entry) -> str:
    """Core threads the experiment ran with (its class may pin them)."""
    return str(e.result.environment.get("threads", "-")) if e.result else "-"


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|")


def _config_changes(res: ExperimentResult) -> str:
    cls = get(res.name)
    defaults = cls().to_dict()
    diff = {k: v for k, v in res.config.items() if defaults.get(k) != v}
    return ", ".join(f"{k}={v}" for k, v in diff.items()) if diff else "defaults"


def _markdown(rep: Report, env: dict[str, Any], when: str) -> str:
    lines = [f"# deeplinear report{' (quick)' if rep.quick else ''}", "",
             f"{when}. {rep.summary_line()}.", "",
             "| | |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in _env_rows(env)]
    lines += ["", "| experiment | status | checks | core threads | time (s) |", "|---|---|---|---:|---:|"]
    for e in rep.entries:
        checks = (f"{sum(c.passed for c in e.result.checks)}/{len(e.result.checks)} PASS"
                  if e.result else "-")
        lines.append(f"| [{e.name}](#{e.name}) | {e.status.upper()} | {checks} | {_threads(e)} | "
                     f"{e.elapsed:.1f} |")
    for e in rep.entries:
        lines += ["", f"## {e.name}", "", f"{e.description}. **{e.status.upper()}**, {e.elapsed:.1f} s."]
        if e.reason:
            lines += ["", "```", e.reason.rstrip(), "```"]
        if e.result is None:
            continue
        r = e.result
        lines += ["", f"Config: {_config_changes(r)} (hash `{r.config_hash}`); files in `{e.name}/`."]
        if r.checks:
            lines += ["", "| check | setting | value | threshold | result |", "|---|---|---:|---:|---|"]
            for c in r.checks:
                name = _md_cell(c.name + (f" ({c.note})" if c.note else ""))
                lines.append(f"| {name} | {_md_cell(c.setting)} | "
                             f"{c.value:.2e} | {c.op} {c.threshold:.1e} | {'PASS' if c.passed else '**FAIL**'} |")
        for f in r.files:
            if f.endswith(".png"):
                lines += ["", f"![{f}]({e.name}/{f})"]
        for note in r.notes:
            lines += ["", f"*{note}*"]
        if r.log_lines:
            lines += ["", "<details><summary>log</summary>", "", "```", *r.log_lines, "```", "", "</details>"]
    return "\n".join(lines) + "\n"


_CSS = """body{font-family:system-ui,sans-serif;max-width:1200px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:.8em 0}td,th{border:1px solid #ccc;padding:.25em .6em;text-align:left}
td.num{text-align:right;font-variant-numeric:tabular-nums}.PASS,.OK{color:#0a6b0a;font-weight:600}
.FAIL,.FAILED,.ERROR,.DIVERGED{color:#b00000;font-weight:600}.SKIPPED{color:#8a6d00;font-weight:600}
img{max-width:100%;border:1px solid #ddd;margin:.5em 0}pre{background:#f6f6f6;padding:.6em;overflow:auto;font-size:85%}
h2{border-bottom:1px solid #ddd;padding-bottom:.2em;margin-top:2em}"""


def _html(rep: Report, env: dict[str, Any], when: str) -> str:
    esc = html.escape
    out = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
           f"<title>deeplinear report{' (quick)' if rep.quick else ''}</title>",
           f"<style>{_CSS}</style></head><body>",
           f"<h1>deeplinear report{' (quick)' if rep.quick else ''}</h1>",
           f"<p>{esc(when)}. {esc(rep.summary_line())}.</p>", "<table>"]
    out += [f"<tr><th>{esc(k)}</th><td>{esc(v)}</td></tr>" for k, v in _env_rows(env)]
    out += ["</table>", "<table><tr><th>experiment</th><th>status</th><th>checks</th>"
            "<th>core threads</th><th>time (s)</th></tr>"]
    for e in rep.entries:
        checks = (f"{sum(c.passed for c in e.result.checks)}/{len(e.result.checks)} PASS"
                  if e.result else "-")
        st = e.status.upper()
        out.append(f'<tr><td><a href="#{esc(e.name)}">{esc(e.name)}</a></td><td class="{st}">{st}</td>'
                   f'<td>{checks}</td><td class="num">{_threads(e)}</td>'
                   f'<td class="num">{e.elapsed:.1f}</td></tr>')
    out.append("</table>")
    for e in rep.entries:
        st = e.status.upper()
        out += [f'<h2 id="{esc(e.name)}">{esc(e.name)}</h2>',
                f'<p>{esc(e.description)}. <span class="{st}">{st}</span>, {e.elapsed:.1f} s.</p>']
        if e.reason:
            out.append(f"<pre>{esc(e.reason.rstrip())}</pre>")
        if e.result is None:
            continue
        r = e.result
        out.append(f"<p>Config: {esc(_config_changes(r))} (hash <code>{esc(r.config_hash)}</code>).</p>")
        if r.checks:
            out.append("<table><tr><th>check</th><th>setting</th><th>value</th><th>threshold</th>"
                       "<th>result</th></tr>")
            for c in r.checks:
                res = "PASS" if c.passed else "FAIL"
                note = f"<br><small>{esc(c.note)}</small>" if c.note else ""
                out.append(f"<tr><td>{esc(c.name)}{note}</td><td>{esc(c.setting)}</td>"
                           f'<td class="num">{c.value:.2e}</td><td class="num">{esc(c.op)} {c.threshold:.1e}</td>'
                           f'<td class="{res}">{res}</td></tr>')
            out.append("</table>")
        for path in r.figures:
            with open(path, "rb") as fh:
                data = base64.b64encode(fh.read()).decode("ascii")
            out.append(f'<img alt="{esc(os.path.basename(path))}" src="data:image/png;base64,{data}">')
        for note in r.notes:
            out.append(f"<p><em>{esc(note)}</em></p>")
        if r.log_lines:
            out.append("<details><summary>log</summary><pre>" + esc("\n".join(r.log_lines)) + "</pre></details>")
    out.append("</body></html>")
    return "\n".join(out) + "\n"
