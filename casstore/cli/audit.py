"""Audit and comparison: ``audit`` (an archivable report of one run) and ``diff``."""

from __future__ import annotations

import datetime as _dt
from typing import Any

import click

from casstore.cli._common import (
    columns,
    common_options,
    complete_run_id,
    emit_json,
    fmt_time,
    human_size,
    open_runs,
    resolve_run_id,
)
from casstore.cli.runs import run_dict
from casstore.exceptions import CasstoreError
from casstore.utils.mlflow_tags import MLFLOW_USER

__all__ = ["COMMANDS", "build_audit", "build_diff"]

_CODE_PREFIXES = ("mlflow.source.", "casstore.git.")
_ENV_PREFIXES = ("casstore.python", "casstore.platform", "casstore.host", "casstore.version", "casstore.lib.", MLFLOW_USER)


def _tag_groups(tags: dict[str, str]) -> tuple[dict[str, str], dict[str, str], dict[str, str]]:
    code = {k: v for k, v in tags.items() if k.startswith(_CODE_PREFIXES)}
    env = {k: v for k, v in tags.items() if k.startswith(_ENV_PREFIXES)}
    other = {k: v for k, v in tags.items() if k not in code and k not in env}
    return code, env, other


def build_audit(runs: Any, run_id: str) -> dict[str, Any]:
    """The audit of one run as a JSON-ready dict (see docs/cli.md for the fields)."""
    from casstore import __version__
    from casstore.maintenance.verify import verify_store
    from casstore.models.entry import ModelEntry
    from casstore.registry import Registry

    view = runs.get_run(run_id)
    exp = {e.experiment_id: e.name for e in runs.list_experiments()}.get(view.experiment_id)
    code, env, other = _tag_groups(view.tags)
    reg = Registry(runs.backend, runs.objects.layout)
    pins: dict[str, list[dict[str, Any]]] = {}
    for m in reg.list_models():
        for mv in reg.list_versions(m.name):
            pins.setdefault(mv.model_digest, []).append({"name": mv.name, "version": mv.version, "aliases": list(mv.aliases)})
    models = []
    for name, ref in sorted(view.models.items()):
        item: dict[str, Any] = {"name": name, "digest": ref.digest, "registry_versions": pins.get(ref.digest, [])}
        try:
            entry = ModelEntry.from_dict(runs.load_model_entry(ref.digest), f"model entry {ref.digest}")
            item.update({
                "flavors": {k: _flavor_summary(v) for k, v in sorted(entry.flavors.items())},
                "requirements": list(entry.requirements),
                "signature": entry.signature,
                "files": {p: {"digest": f.digest, "size": f.size} for p, f in sorted(entry.files.items())},
            })
        except CasstoreError as e:
            item["error"] = str(e)
        models.append(item)
    verification = verify_store(runs, [run_id])
    run = run_dict(view, exp)
    for k in ("params", "metrics", "tags", "artifacts", "artifact_bytes", "models"):
        run.pop(k, None)
    return {
        "format": "casstore-audit",
        "version": 1,
        "generated_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "casstore_version": __version__,
        "store": runs.url,
        "run": run,
        # a run resumed after it ended has one seal per end, each manifest naming the one before
        "seals": [{k: s[k] for k in ("generation", "digest", "status", "end_time")} for s in runs.seal_history(run_id)],
        "params": dict(sorted(view.params.items())),
        "metrics": dict(sorted(view.metrics.items())),
        "tags": {"code": code, "environment": env, "other": other},
        "artifacts": [{"path": p, "size": a.size, "blake3": a.digest} for p, a in sorted(view.artifacts.items())],
        "models": models,
        "verification": verification.to_dict(),
    }


def _flavor_summary(conf: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in conf.items() if isinstance(v, (str, int, float, bool)) or v is None}


def _markdown(a: dict[str, Any]) -> str:
    r = a["run"]
    v = a["verification"]
    out = [f"# Audit of run {r['run_id']}", ""]
    out += [
        f"- **Run digest** (BLAKE3 of the sealed manifest): `{r['digest'] or 'none: the run is not sealed'}`",
        f"- **Name**: {r['run_name'] or '-'}",
        f"- **Experiment**: {r['experiment_name'] or '-'} (`{r['experiment_id']}`)",
        f"- **Status**: {r['status']}{' (deleted)' if r['deleted'] else ''}",
        f"- **Start / end**: {fmt_time(r['start_time'])} / {fmt_time(r['end_time'])}",
        f"- **Store**: `{a['store']}`",
        f"- **Verification**: {'PASSED' if v['ok'] else 'FAILED'} ({_checked(v)})",
        f"- **Report**: generated {a['generated_at']} by casstore {a['casstore_version']}",
        "",
    ]
    if len(a["seals"]) > 1:
        out += ["## Seals (the run was resumed after it ended)", "",
                "Each seal's manifest names the digest of the seal before it; every one stays verifiable.", "",
                "| end | status | ended | run digest |", "|---:|---|---|---|"]
        out += [f"| {x['generation']} | {x['status']} | {fmt_time(x['end_time'])} | `{x['digest']}` |" for x in a["seals"]]
        out.append("")
    out += _md_kv("Parameters", a["params"])
    out += _md_kv("Metrics (latest values)", a["metrics"])
    out += _md_kv("Code version", a["tags"]["code"])
    out += _md_kv("Environment", a["tags"]["environment"])
    out += _md_kv("Other tags", a["tags"]["other"])
    out += ["## Artifacts", "",
            "Each digest is the plain BLAKE3 of the file: check a downloaded copy with `b3sum <file>`.", ""]
    if a["artifacts"]:
        out += ["| path | size (bytes) | BLAKE3 |", "|---|---:|---|"]
        out += [f"| `{x['path']}` | {x['size']} | `{x['blake3']}` |" for x in a["artifacts"]]
    else:
        out.append("(none)")
    out.append("")
    if a["models"]:
        out += ["## Models", ""]
        for m in a["models"]:
            out += [f"### {m['name']}", "", f"- **Model digest**: `{m['digest']}`"]
            if "error" in m:
                out.append(f"- **Error**: {m['error']}")
            else:
                out.append(f"- **Flavors**: {', '.join(m['flavors']) or '-'}")
                out.append(f"- **Requirements**: {', '.join(f'`{q}`' for q in m['requirements']) or '-'}")
            pinned = ", ".join(f"{p['name']} v{p['version']}" + (f" ({', '.join(p['aliases'])})" if p["aliases"] else "")
                               for p in m["registry_versions"])
            out += [f"- **Registry versions pinning it**: {pinned or 'none'}", ""]
    out += ["## Verification", ""]
    if v["ok"]:
        out.append(f"Every file of the run was read back and re-hashed, chunk by chunk and whole: no problem ({_checked(v)}).")
    else:
        from casstore.maintenance.verify import describe_affected

        for p in v["problems"]:
            out.append(f"- **{p['kind']}** `{p['object']}`: {p['detail']}")
            out += [f"  - affects {describe_affected(x)}" for x in p["affects"]]
    out.append("")
    return "\n".join(out)


def _md_kv(title: str, d: dict[str, Any]) -> list[str]:
    if not d:
        return [f"## {title}", "", "(none)", ""]
    return [f"## {title}", "", "| key | value |", "|---|---|"] + [f"| `{k}` | `{v}` |" for k, v in d.items()] + [""]


def _checked(v: dict[str, Any]) -> str:
    c = v["checked"]
    return f"{c.get('files', 0)} files, {c.get('chunks', 0)} chunks, {human_size(c.get('deep_bytes', 0))} re-hashed"


def _text(a: dict[str, Any]) -> str:
    r = a["run"]
    v = a["verification"]
    lines = [
        f"run          {r['run_id']}",
        f"run digest   {r['digest'] or '- (not sealed)'}",
        f"name         {r['run_name'] or '-'}",
        f"experiment   {r['experiment_name'] or '-'} ({r['experiment_id']})",
        f"status       {r['status']}{' (deleted)' if r['deleted'] else ''}",
        f"start / end  {fmt_time(r['start_time'])} / {fmt_time(r['end_time'])}",
        f"verification {'PASSED' if v['ok'] else 'FAILED'} ({_checked(v)})",
    ]
    if len(a["seals"]) > 1:
        lines += ["", "seals (resumed after ending; each manifest names the digest before it)"]
        lines += [f"  {x['generation']}  {x['status']:<8} {fmt_time(x['end_time'])}  {x['digest']}" for x in a["seals"]]
    for title, d in (("params", a["params"]), ("metrics", a["metrics"]), ("code", a["tags"]["code"]),
                     ("environment", a["tags"]["environment"]), ("other tags", a["tags"]["other"])):
        if d:
            lines += ["", title] + [f"  {k} = {val}" for k, val in d.items()]
    lines += ["", "artifacts (size, BLAKE3: check with b3sum)"]
    lines += columns([(x["path"], x["size"], x["blake3"]) for x in a["artifacts"]], right=[1], indent="  ") or ["  (none)"]
    for m in a["models"]:
        lines += ["", f"model {m['name']}  {m['digest']}"]
        if "error" in m:
            lines.append(f"  error: {m['error']}")
        else:
            lines.append(f"  flavors: {', '.join(m['flavors'])}")
            lines.append(f"  requirements: {', '.join(m['requirements']) or '-'}")
        lines.append("  registry: " + (", ".join(f"{p['name']} v{p['version']}" for p in m["registry_versions"]) or "none"))
    if not v["ok"]:
        from casstore.maintenance.verify import describe_affected

        lines += ["", "problems"]
        for p in v["problems"]:
            lines.append(f"  {p['kind'].upper()} {p['object']}: {p['detail']}")
            lines += [f"      affects {describe_affected(x)}" for x in p["affects"]]
    return "\n".join(lines)


@click.command("audit", epilog="""\b
Examples:
  casstore audit 3f2a9c
  casstore audit 3f2a9c --markdown > audit-3f2a9c.md
  casstore audit 3f2a9c --json > audit-3f2a9c.json
\b
Exit status: 0 when the run verifies, 1 otherwise (the report is printed either way).
""")
@click.argument("run", shell_complete=complete_run_id)
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.option("--markdown", is_flag=True, help="Print the report as Markdown.")
@common_options
def audit_cmd(run: str, as_json: bool, markdown: bool, store: str | None) -> None:
    """A report an auditor can archive: everything a run recorded, and proof it is intact.

    Run digest, params, metrics, tags (code version, environment), every artifact with
    its path, size and BLAKE3 digest (checkable with `b3sum`), logged models with
    flavors, requirements and the registry versions pinning them, and the result of
    reading back and re-hashing every file of the run.
    """
    if as_json and markdown:
        raise click.UsageError("--json and --markdown are two forms of the report: give one of them")
    fmt = "json" if as_json else "markdown" if markdown else None
    runs = open_runs(store)
    report = build_audit(runs, resolve_run_id(runs, run))
    if fmt == "json":
        emit_json(report)
    elif fmt == "markdown":
        click.echo(_markdown(report))
    else:
        click.echo(_text(report))
    if not report["verification"]["ok"]:
        raise click.exceptions.Exit(1)


# ---- diff ----------------------------------------------------------------------------------


def _diff_maps(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    return {
        "added": {k: b[k] for k in sorted(b.keys() - a.keys())},
        "removed": {k: a[k] for k in sorted(a.keys() - b.keys())},
        "changed": {k: {"a": a[k], "b": b[k]} for k in sorted(a.keys() & b.keys()) if a[k] != b[k]},
    }


def build_diff(runs: Any, run_a: str, run_b: str, views: tuple[Any, Any] | None = None) -> dict[str, Any]:
    """What differs between two runs, as a JSON-ready dict (``views``: the two runs, if read already)."""
    va, vb = views if views is not None else (runs.get_run(run_a), runs.get_run(run_b))
    arts_a = {p: {"digest": e.digest, "size": e.size} for p, e in va.artifacts.items()}
    arts_b = {p: {"digest": e.digest, "size": e.size} for p, e in vb.artifacts.items()}
    arts = _diff_maps(arts_a, arts_b)
    for path, ch in arts["changed"].items():
        if va.artifacts[path].inline or vb.artifacts[path].inline:
            ch["shared_chunks"] = None  # held in a run record: no chunks to share
            continue
        ch.update(_shared_chunks(runs, ch["a"]["digest"], ch["b"]["digest"]))
    return {
        "a": {"run_id": va.run_id, "run_name": va.run_name, "digest": va.digest},
        "b": {"run_id": vb.run_id, "run_name": vb.run_name, "digest": vb.digest},
        "params": _diff_maps(va.params, vb.params),
        "metrics": _diff_maps(va.metrics, vb.metrics),
        "tags": _diff_maps(va.tags, vb.tags),
        "artifacts": arts,
        "models": _diff_maps({n: r.digest for n, r in va.models.items()}, {n: r.digest for n, r in vb.models.items()}),
        "unchanged_artifacts": sum(1 for p in arts_a.keys() & arts_b.keys() if arts_a[p] == arts_b[p]),
    }


def _shared_chunks(runs: Any, da: str, db: str) -> dict[str, Any]:
    """How many of B's chunks A already has (what dedup shares between the two versions)."""
    try:
        ca, cb = runs.objects.recipe(da).chunks, runs.objects.recipe(db).chunks
    except CasstoreError as e:
        return {"shared_chunks": None, "error": str(e)}
    have = {c for c, _ in ca}
    shared = [(c, n) for c, n in cb if c in have]
    return {
        "chunks_a": len(ca),
        "chunks_b": len(cb),
        "shared_chunks": len(shared),
        "shared_bytes": sum(n for _, n in shared),
    }


@click.command("diff", epilog="""\b
Examples:
  casstore diff 3f2a9c 8e1d07
  casstore diff 3f2a9c 8e1d07 --json | jq .artifacts.changed
\b
Exit status: 0 whether or not the runs differ (like `git diff --no-exit`).
""")
@click.argument("run_a", shell_complete=complete_run_id)
@click.argument("run_b", shell_complete=complete_run_id)
@click.option("--json", "as_json", is_flag=True, help="Print the differences as JSON.")
@common_options
def diff_cmd(run_a: str, run_b: str, as_json: bool, store: str | None) -> None:
    """Show the params, metrics, tags, artifacts and models that differ between two runs.

    Artifacts are added, removed, or changed (another digest at the same path); for a
    changed file, how many of its chunks the two versions share.
    """
    runs = open_runs(store)
    d = build_diff(runs, resolve_run_id(runs, run_a), resolve_run_id(runs, run_b))
    if as_json:
        emit_json(d)
        return
    click.echo(f"--- a {d['a']['run_id']} {d['a']['run_name'] or ''}".rstrip())
    click.echo(f"+++ b {d['b']['run_id']} {d['b']['run_name'] or ''}".rstrip())
    any_diff = False
    for section in ("params", "metrics", "tags", "models"):
        s = d[section]
        if not (s["added"] or s["removed"] or s["changed"]):
            continue
        any_diff = True
        click.echo(f"\n{section}")
        for k, v in s["removed"].items():
            click.echo(f"  - {k} = {v}")
        for k, v in s["added"].items():
            click.echo(f"  + {k} = {v}")
        for k, v in s["changed"].items():
            click.echo(f"  ~ {k}: {v['a']} -> {v['b']}")
    arts = d["artifacts"]
    if arts["added"] or arts["removed"] or arts["changed"]:
        any_diff = True
        click.echo("\nartifacts")
        rows = [(f"- {p}", human_size(e["size"]), e["digest"]) for p, e in arts["removed"].items()]
        rows += [(f"+ {p}", human_size(e["size"]), e["digest"]) for p, e in arts["added"].items()]
        for line in columns(rows, right=[1], indent="  "):
            click.echo(line)
        for p, ch in arts["changed"].items():
            shared = ""
            if ch.get("shared_chunks") is not None:
                shared = (f"; {ch['shared_chunks']} of {ch['chunks_b']} chunks shared "
                          f"({human_size(ch['shared_bytes'])})")
            click.echo(f"  ~ {p}: {ch['a']['digest'][:16]} ({human_size(ch['a']['size'])}) -> "
                       f"{ch['b']['digest'][:16]} ({human_size(ch['b']['size'])}){shared}")
    click.echo(f"\n{d['unchanged_artifacts']} artifact(s) identical" + ("" if any_diff else "; no other differences"))


COMMANDS = [audit_cmd, diff_cmd]
