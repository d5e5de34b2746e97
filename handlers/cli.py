"""The `mnemo` command: migrate, serve, keys, users."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from typing import Any

from sqlalchemy import Connection, Engine, make_url
from sqlalchemy.exc import DBAPIError

from core.identity import brains, keys
from core.kernel.config import get_settings
from core.kernel.db import migrations
from core.kernel.db.connect import engine_for
from core.kernel.db.engine import MissingDriver, sql, transaction
from core.kernel.errors import InvalidInput, MnemoError, NotFound
from core.kernel.ids import iso


def _engine() -> Engine:
    # As the app connects: the password from MNEMO_DATABASE_SECRET_ARN or an IAM token
    # when the URL carries none (`mnemo migrate` against Aurora from an operator's shell).
    return engine_for(get_settings())


def cmd_migrate(args: argparse.Namespace) -> int:
    engine = _engine()
    if args.status:
        done = migrations.applied(engine)
        for m in migrations.MIGRATIONS:
            state = f"applied {iso(done[m.version])}" if m.version in done else "pending"
            print(f"{m.version:>4}  {m.name:<45} {state}")
        return 0
    if args.dry_run:
        plan = migrations.dry_run_sql(engine)
        if not plan:
            print("-- nothing to apply: the database is up to date")
        for m, statements in plan:
            print(f"-- migration {m.version}: {m.name}")
            for statement in statements:
                print(f"{statement};")
        return 0
    print("Mnemo Database Migration Tool")
    migrations.migrate(engine, report=print)
    mode = get_settings().vector_search.pgvector
    if engine.dialect.name == "postgresql" and mode != "off":
        # Deploy time has no request deadline: build the HNSW indexes too large to build
        # inside a search (core/retrieval/pgvector.py).
        from core.retrieval import pgvector

        if pgvector.ensure(engine, mode):
            pgvector.build_indexes(engine, report=print)
    print("[SUCCESS] Migration completed")
    return 0


def cmd_serve(args: argparse.Namespace, *, wrap: Callable[[Any], Any] | None = None) -> int:
    """`wrap`, if given, wraps the ASGI app uvicorn runs (the test suite's reply checker,
    tests/checked_serve.py); the app and its settings are the command's own."""
    import uvicorn

    from core.webhooks.drainer import BackgroundDrainer
    from handlers.api import create_app

    app = create_app(offload=True)
    services = app.state.services
    # Webhook deliveries go out from a background thread, woken after each commit that wrote
    # some (the role the SQS queue and DeliveryFunction play on AWS).
    drainer = BackgroundDrainer(services.ready_engine, services.settings.webhooks)
    drainer.start()
    try:
        served = app if wrap is None else wrap(app)
        uvicorn.run(served, host=args.host, port=args.port, log_level="warning")
    finally:
        drainer.stop()
    return 0


def cmd_deliver(args: argparse.Namespace) -> int:
    """Send every due webhook delivery once (retries that come due meanwhile included)."""
    from core.webhooks import outbox

    settings = get_settings()
    engine = _engine()
    migrations.ensure_schema(engine)
    report = outbox.drain(engine, settings.webhooks, budget_seconds=args.budget)
    print(
        f"{report.claimed} attempts: {report.delivered} delivered, {report.retrying} to retry, "
        f"{report.failed} failed ({report.seconds:.2f} s)"
    )
    for kind, count in sorted(report.errors.items()):
        print(f"  {count} x {kind}")
    return 0


def _brain(conn: Connection, slug: str, *, create: bool = False) -> str:
    """The brain's id; an unknown name is an error naming the brains there are, unless
    `create` (a typo must not silently make a new, empty brain)."""
    brains.check_slug(slug)
    if create:
        return brains.ensure_brain(conn, slug)
    try:
        return brains.brain_id(conn, slug)
    except NotFound:
        names = conn.execute(sql("SELECT slug FROM brains ORDER BY slug LIMIT 20")).scalars()
        known = ", ".join(names) or "none yet"
        raise NotFound(
            f"no brain named {slug!r} (brains: {known}); pass --create-brain to make it"
        ) from None


def cmd_keys_create(args: argparse.Namespace) -> int:
    engine = _engine()
    migrations.ensure_schema(engine)
    with transaction(engine) as conn:
        brain = _brain(conn, args.brain, create=args.create_brain)
        key = keys.create_key_in(
            conn, brain, name=args.name, user_id=args.user_id, read_only=args.read_only
        )
    print(key.secret)
    scope = f"user {key.user_id}" if key.user_id else "whole brain"
    mode = "read-only" if key.read_only else "read-write"
    print(
        f"key {key.id} for brain {args.brain!r} ({scope}, {mode}). Shown once: store it now.",
        file=sys.stderr,
    )
    return 0


def cmd_keys_list(args: argparse.Namespace) -> int:
    engine = _engine()
    migrations.ensure_schema(engine)
    with transaction(engine, write=False) as conn:
        found = keys.list_keys(conn, _brain(conn, args.brain), include_revoked=args.all)
    if args.json:
        print(json.dumps(found, indent=2))
        return 0
    print(f"{'id':<36}  {'prefix':<18} {'name':<20} {'scope':<16} {'mode':<10} {'last used':<20}")
    for k in found:
        scope = f"user {k['user_id']}" if k["user_id"] else "whole brain"
        mode = "revoked" if k["revoked_at"] else ("read-only" if k["read_only"] else "read-write")
        print(
            f"{k['id']:<36}  {k['prefix']:<18} {(k['name'] or '-')[:20]:<20} {scope[:16]:<16} "
            f"{mode:<10} {k['last_used_at'] or 'never':<20}"
        )
    return 0


def cmd_keys_revoke(args: argparse.Namespace) -> int:
    engine = _engine()
    migrations.ensure_schema(engine)
    with transaction(engine) as conn:
        if not keys.revoke_key(conn, _brain(conn, args.brain), args.key_id):
            raise NotFound(f"brain {args.brain!r} has no active key {args.key_id}")
    print(f"key {args.key_id} revoked: it stops working on its next request", file=sys.stderr)
    return 0


def cmd_accounts_bind(args: argparse.Namespace) -> int:
    from core.identity import accounts, memberships

    engine = _engine()
    migrations.ensure_schema(engine)
    slug = args.brain or get_settings().default_brain
    with transaction(engine) as conn:
        # The default brain is the one MNEMO_API_KEY writes to: made here if no request has yet.
        brain = _brain(conn, slug, create=args.brain is None or args.create_brain)
        member = memberships.bind(conn, brain, accounts.normalize_email(args.email), args.role)
    print(f"{member['email']} is now {member['role']} of brain {slug!r}: it shows in the console")
    return 0


def cmd_reindex(args: argparse.Namespace) -> int:
    """Embed every memory of a brain that has no vector of the configured model, in batches,
    each embedded outside any transaction (a remote model may be slow)."""
    from core.embeddings import get_embedder
    from core.identity.brains import brain_id
    from core.kernel.scope import Scope
    from core.retrieval import reindex

    settings = get_settings()
    engine = _engine()
    migrations.ensure_schema(engine)
    embedder = get_embedder(settings.embedder)
    with transaction(engine, write=False) as conn:
        scope = Scope(brain_id=brain_id(conn, args.brain), principal="cli")
        left = reindex.remaining(conn, scope, embedder.name)
    print(f"{left} memories of brain {args.brain!r} to embed with {embedder.name}")
    done = 0
    while True:
        with transaction(engine, write=False) as conn:
            batch = reindex.pending(conn, scope, embedder.name, args.batch)
        if not batch:
            break
        vectors = embedder.embed([text for _, text in batch])
        with transaction(engine) as conn:
            done += reindex.store(
                conn,
                scope,
                embedder.name,
                [(memory_id, v) for (memory_id, _), v in zip(batch, vectors, strict=True)],
            )
        print(f"  {done}/{left}")
    print(f"[SUCCESS] {done} memories embedded")
    return 0


def cmd_maintain(args: argparse.Namespace) -> int:
    """Decay, retention, conflict detection and consolidation suggestions, per brain in
    bounded batches, as the scheduled MaintenanceFunction runs them."""
    import json

    from core.app import maintenance
    from core.identity.brains import brain_id

    settings = get_settings()
    engine = _engine()
    migrations.ensure_schema(engine)
    target = None
    if args.brain is not None:
        with transaction(engine, write=False) as conn:
            target = brain_id(conn, args.brain)
    tasks = maintenance.run(engine, settings, brain_id=target, dry_run=args.dry_run)
    print(json.dumps(tasks, indent=2, default=str))
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    """A brain as JSON Lines on stdout (or --output), streamed page by page."""
    from core.transfer.exporting import export_records
    from core.transfer.format import to_lines

    engine = _engine()
    migrations.ensure_schema(engine)
    out = open(args.output, "wb") if args.output else sys.stdout.buffer  # noqa: SIM115
    counts: dict[str, int] = {}
    try:
        for record in export_records(engine, args.brain, include_archived=not args.active_only):
            if record.get("kind") == "end":
                counts = record["counts"]
            for line in to_lines([record]):
                out.write(line)
    finally:
        if args.output:
            out.close()
        else:
            out.flush()
    summary = ", ".join(f"{n} {kind}" for kind, n in counts.items() if n)
    print(f"[SUCCESS] exported brain {args.brain!r}: {summary or 'nothing'}", file=sys.stderr)
    return 0


def cmd_import(args: argparse.Namespace) -> int:
    """A Mnemo export (JSON Lines) into a brain, created if new. No size limit: the file is
    read line by line and written in batches (a replace in one transaction)."""
    if args.source_system is not None or args.more_paths:
        return cmd_import_from(args)
    from core.embeddings import get_embedder
    from core.transfer.format import parse_lines
    from core.transfer.importing import ImportReport, import_records

    settings = get_settings()
    engine = _engine()
    migrations.ensure_schema(engine)

    def progress(report: ImportReport) -> None:
        print(
            f"  {report.read} read, {report.imported} imported, {report.updated} updated, "
            f"{report.skipped} skipped",
            file=sys.stderr,
        )

    source = open(args.path, "rb") if args.path != "-" else sys.stdin.buffer  # noqa: SIM115
    try:
        report = import_records(
            engine,
            args.brain,
            parse_lines(source),
            strategy=args.strategy,
            remap_ids=args.remap_ids,
            embedder=get_embedder(settings.embedder),
            batch_size=args.batch,
            on_batch=progress,
            limits=settings.limits,
            gate=args.gate,
        )
    finally:
        if args.path != "-":
            source.close()
    print(json.dumps(report.to_dict(), indent=2))
    print(
        f"[SUCCESS] {report.imported} imported, {report.updated} updated, "
        f"{report.skipped} skipped into brain {args.brain!r}",
        file=sys.stderr,
    )
    return 0


def cmd_import_from(args: argparse.Namespace) -> int:
    """Another system's files (mem0, OpenMemory, MemoryVault) into a brain, with a progress bar
    on stderr and the report (read, imported, skipped with reasons) on stdout."""
    from core.embeddings import get_embedder
    from core.transfer.importers.pipeline import run_import
    from handlers.progress import ProgressBar

    if args.source_system is None:
        raise InvalidInput("several files are only read with --from (mem0: JSON + history.db)")
    if args.remap_ids:
        raise InvalidInput("--remap-ids does not apply to --from: imported ids are derived")
    settings = get_settings()
    engine = _engine()
    migrations.ensure_schema(engine)
    bar = ProgressBar(f"import {args.source_system}")
    try:
        report = run_import(
            engine,
            args.source_system,
            [args.path, *args.more_paths],
            args.brain,
            strategy=args.strategy,
            user_id=args.user_id,
            source_brain=args.source_brain,
            embedder=get_embedder(settings.embedder),
            batch_size=args.batch,
            progress=bar.update,
            limits=settings.limits,
            gate=args.gate,
        )
    finally:
        bar.close()
    if args.json:
        print(json.dumps(report.to_dict(), indent=2))
    else:
        print("\n".join(report.lines()))
    return 0


def cmd_snapshot(args: argparse.Namespace) -> int:
    """Snapshots from the command line, as the brain's owner: no request timeout, so the way
    to restore a large brain."""
    from core.embeddings import get_embedder
    from core.identity.brains import brain_id
    from core.kernel.scope import Scope
    from core.transfer import snapshots

    settings = get_settings()
    engine = _engine()
    migrations.ensure_schema(engine)
    with transaction(engine, write=False) as conn:
        scope = Scope(brain_id=brain_id(conn, args.brain), principal="cli", role="owner")
    config = settings.snapshots
    result: object
    if args.snapshot_command == "create":
        result = snapshots.create(
            engine,
            scope,
            config,
            label=args.label,
            note=args.note,
            include_archived=args.include_archived,
        )
    elif args.snapshot_command == "list":
        with transaction(engine, write=False) as conn:
            result = snapshots.list_snapshots(conn, scope, limit=500)["results"]
    elif args.snapshot_command == "restore":
        result = snapshots.restore(
            engine, scope, args.id, config, mode=args.mode, embedder=get_embedder(settings.embedder)
        )
    else:
        result = snapshots.delete(engine, scope, args.id, config)
    print(json.dumps(result, indent=2))
    return 0


def cmd_users(args: argparse.Namespace) -> int:
    """End users from the command line, as the brain's owner: `erase` has no request timeout
    here, so it runs every batch to the end (a crashed run is resumed by running it again)."""
    from core.app.erasure import erase_user
    from core.curation import erasure
    from core.identity.brains import brain_id
    from core.kernel.scope import Scope

    if args.users_command == "erase" and not args.yes:
        raise InvalidInput("add --yes to erase: an erasure cannot be undone")
    engine = _engine()
    migrations.ensure_schema(engine)
    with transaction(engine, write=False) as conn:
        scope = Scope(brain_id=brain_id(conn, args.brain), principal="cli", role="owner")
    result: object
    if args.users_command == "erase":
        result = erase_user(engine, scope, args.user_id, get_settings().snapshots, batch=args.batch)
    else:
        with transaction(engine, write=False) as conn:
            result = erasure.list_receipts(conn, scope)
    print(json.dumps(result, indent=2))
    return 0


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(prog="mnemo", description="Mnemo, memory for AI agents")
    sub = root.add_subparsers(dest="command", required=True)

    migrate = sub.add_parser("migrate", help="apply pending schema migrations")
    mode = migrate.add_mutually_exclusive_group()
    mode.add_argument("--status", action="store_true", help="list migrations and their state")
    mode.add_argument("--dry-run", action="store_true", help="print the SQL, change nothing")
    migrate.set_defaults(run=cmd_migrate)

    serve = sub.add_parser("serve", help="run the API under uvicorn")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8080)
    serve.set_defaults(run=cmd_serve)

    deliver = sub.add_parser("deliver", help="send due webhook deliveries once")
    deliver.add_argument(
        "--budget", type=float, default=300.0, help="stop starting new batches after this (s)"
    )
    deliver.set_defaults(run=cmd_deliver)

    key_cmds = sub.add_parser("keys", help="manage API keys").add_subparsers(
        dest="keys_command", required=True
    )
    create = key_cmds.add_parser("create", help="create a key; prints it once")
    create.add_argument("--brain", required=True, help="brain name")
    create.add_argument(
        "--create-brain", action="store_true", help="make the brain if there is none by that name"
    )
    create.add_argument("--user-id", help="scope the key to one end user")
    create.add_argument("--read-only", action="store_true")
    create.add_argument("--name", help="a label for the key")
    create.set_defaults(run=cmd_keys_create)
    listing = key_cmds.add_parser("list", help="a brain's keys (never their secrets)")
    listing.add_argument("--brain", required=True, help="brain name")
    listing.add_argument("--all", action="store_true", help="revoked keys too")
    listing.add_argument("--json", action="store_true", help="print JSON")
    listing.set_defaults(run=cmd_keys_list)
    revoke = key_cmds.add_parser("revoke", help="revoke a key by its id")
    revoke.add_argument("key_id")
    revoke.add_argument("--brain", required=True, help="brain name")
    revoke.set_defaults(run=cmd_keys_revoke)

    account_cmds = sub.add_parser("accounts", help="console accounts").add_subparsers(
        dest="accounts_command", required=True
    )
    bind = account_cmds.add_parser(
        "bind", help="make an account a member of a brain (the console then shows it)"
    )
    bind.add_argument("--email", required=True, help="an account that signed up")
    bind.add_argument("--brain", help="brain name; default: MNEMO_DEFAULT_BRAIN (MNEMO_API_KEY's)")
    bind.add_argument("--role", choices=("owner", "member"), default="owner")
    bind.add_argument("--create-brain", action="store_true", help="make --brain if it is new")
    bind.set_defaults(run=cmd_accounts_bind)

    export = sub.add_parser("export", help="write a brain as JSON Lines (stdout by default)")
    export.add_argument("--brain", required=True, help="brain name")
    export.add_argument("--output", "-o", help="a file to write instead of stdout")
    export.add_argument(
        "--active-only", action="store_true", help="leave archived and deleted memories out"
    )
    export.set_defaults(run=cmd_export)

    importing = sub.add_parser("import", help="import a Mnemo export (JSON Lines) into a brain")
    importing.add_argument("path", help="the .jsonl file, or - for stdin")
    importing.add_argument("--brain", required=True, help="brain name (created if new)")
    importing.add_argument(
        "--strategy",
        choices=("merge", "skip_existing", "replace"),
        default="merge",
        help="for ids the brain has: the import wins, the brain wins, or empty the brain first",
    )
    importing.add_argument(
        "--remap-ids", action="store_true", help="give every record a new id (references follow)"
    )
    importing.add_argument("--batch", type=int, default=1000, help="records per transaction")
    importing.add_argument(
        "--gate",
        action="store_true",
        help="screen each memory with the brain's write gate: restatements reinforce what is "
        "there, instructions and boilerplate go to quarantine",
    )
    importing.add_argument(
        "--from",
        dest="source_system",
        choices=("mem0", "openmemory", "memoryvault"),
        help="read another system's files instead: mem0 history.db and/or get_all JSON, "
        "OpenMemory SQLite, MemoryVault export JSON or D1 .sql dump",
    )
    importing.add_argument(
        "more_paths", nargs="*", help="with --from mem0: the history.db besides the JSON"
    )
    importing.add_argument("--user-id", help="with --from: the user of memories that have none")
    importing.add_argument(
        "--source-brain", help="with --from memoryvault and a D1 dump: the brain (id or slug)"
    )
    importing.add_argument("--json", action="store_true", help="with --from: report as JSON")
    importing.set_defaults(run=cmd_import)

    snapshot = sub.add_parser("snapshot", help="create, list, restore or delete snapshots")
    snapshot_cmds = snapshot.add_subparsers(dest="snapshot_command", required=True)
    snap_create = snapshot_cmds.add_parser("create", help="snapshot a brain")
    snap_create.add_argument("--label", required=True)
    snap_create.add_argument("--note")
    snap_create.add_argument(
        "--include-archived", action="store_true", help="archived and deleted memories too"
    )
    snapshot_cmds.add_parser("list", help="a brain's snapshots, newest first")
    snap_restore = snapshot_cmds.add_parser("restore", help="restore in one transaction")
    snap_restore.add_argument("id")
    snap_restore.add_argument("--mode", choices=("merge", "replace"), default="merge")
    snap_delete = snapshot_cmds.add_parser("delete", help="delete a snapshot")
    snap_delete.add_argument("id")
    for command in (snap_create, snap_restore, snap_delete, snapshot_cmds.choices["list"]):
        command.add_argument("--brain", required=True, help="brain name")
    snapshot.set_defaults(run=cmd_snapshot)

    users = sub.add_parser("users", help="erase an end user; list erasure receipts")
    users_cmds = users.add_subparsers(dest="users_command", required=True)
    erase = users_cmds.add_parser(
        "erase", help="erase every row of one end user in a brain; prints the receipt"
    )
    erase.add_argument("user_id")
    erase.add_argument("--yes", action="store_true", help="confirm: it cannot be undone")
    erase.add_argument("--batch", type=int, default=500, help="memories per transaction")
    receipts = users_cmds.add_parser("receipts", help="the brain's erasure receipts")
    for command in (erase, receipts):
        command.add_argument("--brain", required=True, help="brain name")
    users.set_defaults(run=cmd_users)

    reindex = sub.add_parser("reindex", help="embed a brain's memories with the current model")
    reindex.add_argument("--brain", required=True, help="brain name")
    reindex.add_argument("--batch", type=int, default=256, help="memories per transaction")
    reindex.set_defaults(run=cmd_reindex)

    maintain = sub.add_parser(
        "maintain", help="run maintenance now: decay, retention, conflicts, consolidation"
    )
    maintain.add_argument("--brain", help="only this brain (name); default every brain")
    maintain.add_argument(
        "--dry-run", action="store_true", help="report what would change, change nothing"
    )
    maintain.set_defaults(run=cmd_maintain)
    return root


def main(argv: Sequence[str] | None = None) -> int:
    """Setup mistakes (bad configuration, a database down, a missing driver, an unknown
    brain) are one line on stderr and exit code 2, never a traceback."""
    args = parser().parse_args(argv)
    try:
        get_settings()
    except ValueError as exc:
        return _fail(f"configuration: {exc}")
    try:
        code: int = args.run(args)
    except MnemoError as exc:
        return _fail(exc.message)
    except MissingDriver as exc:
        return _fail(str(exc))
    except DBAPIError as exc:
        return _fail(_database_problem(exc))
    except OSError as exc:
        return _fail(f"{exc.strerror or exc}{f': {exc.filename}' if exc.filename else ''}")
    return code


def _fail(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return 2


def _database_problem(exc: DBAPIError) -> str:
    where = make_url(get_settings().database_url).render_as_string(hide_password=True)
    # The driver's first line says what went wrong; the rest is SQL and a traceback's worth.
    reason = str(exc.orig).strip().splitlines()[0] if exc.orig else type(exc).__name__
    if exc.connection_invalidated or "connect" in reason.lower() or "refused" in reason.lower():
        return f"cannot reach the database at {where}: {reason}"
    return f"the database at {where} refused the command: {reason}"


if __name__ == "__main__":
    raise SystemExit(main())
