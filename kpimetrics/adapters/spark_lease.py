"""One run at a time on an output schema of a shared Spark catalog: a lease held in the catalog itself.

A local warehouse has a lock file (spark.py, WarehouseLock); clients of a shared metastore (a Spark
Connect server, drivers on a cluster) share no file, and Spark has no transactions or conditional
updates. What a metastore does guarantee is that one name in a schema is created once: of two clients
creating the same view, exactly one succeeds (a Connect server's catalog calls are serialised; two drivers
meet at the metastore database's unique key on the table name). The lease is built on that alone:

    kpi_lock__<n>   a view in the output schema: SELECT host, pid, token, expires_at, released
                    (expires_at in seconds since 1970 by the warehouse's clock, not a client's)

The holder is the view with the highest n. It is free when released, when expired, or when its holder is a
process of this host that is gone (a killed run: no waiting out its lease). To take it, a client creates
kpi_lock__<n+1>; of clients that read the same n, the metastore lets one create it: that one wins, the
others fail with KPI184 naming the holder. The winner drops the older views; n never goes back, so two
clients can never both create a view that makes them the holder.

A run renews its lease as it goes (at most every RENEW_AFTER seconds, and right before it moves the
version pointer): renewing checks that the highest view is still its own, so a run that stalled past its
lease and was taken over stops with KPI185 instead of publishing over the newer run. What remains is a
stall of a whole lease between that last check and the pointer swap, one statement later.
"""
from __future__ import annotations

import os
import re
import socket
import time
import uuid
from dataclasses import dataclass
from typing import Callable

from sqlglot import exp

from ..errors import WarehouseError, error

PREFIX = "kpi_lock__"
LEASE_SECONDS = 600  # a run renews it well before: a killed run on another host blocks others this long at most
RENEW_AFTER = 120.0  # seconds between renewals while the run's statements go on
ATTEMPTS = 5  # takes that find the lease free and still lose the race to create the next view


@dataclass(frozen=True)
class Holder:
    generation: int
    host: str
    pid: int
    token: str
    expires_at: int  # seconds since 1970, the warehouse's clock
    released: bool
    now: int  # the warehouse's clock when it was read

    def free(self) -> bool:
        return self.released or self.expires_at <= self.now or (self.host == socket.gethostname() and not _alive(self.pid))

    def __str__(self) -> str:
        left = max(self.expires_at - self.now, 0)
        return f"process {self.pid} on host {self.host} (lease {self.name}, expiring in {left} s)"

    @property
    def name(self) -> str:
        return f"{PREFIX}{self.generation}"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class CatalogLease:
    """This connection's lease on an output schema (taken by `take`, renewed by `renew`, released by `release`)."""

    def __init__(self, schema: str, execute: Callable[[str], None], fetchall: Callable[[str], list[tuple]],
                 relations: Callable[[str], list[tuple[str, str]]]):
        self.schema = schema
        self._execute, self._fetchall, self._relations = execute, fetchall, relations
        self.token = uuid.uuid4().hex[:12]
        self.generation: int | None = None
        self._renewed = 0.0

    def _t(self, generation: int) -> exp.Table:
        return exp.table_(f"{PREFIX}{generation}", db=self.schema, quoted=True)

    def _sql(self, tree: exp.Expression) -> str:
        return tree.sql(dialect="spark")

    def _generations(self) -> list[int]:
        found = (re.fullmatch(re.escape(PREFIX) + r"([0-9]+)", name) for name, _ in self._relations(self.schema))
        return sorted(int(m[1]) for m in found if m)

    def _read(self, generation: int) -> Holder | None:
        """The lease view `generation` (None: it is gone, dropped by a newer holder)."""
        query = exp.select("host", "pid", "token", "expires_at", "released", "unix_timestamp()").from_(self._t(generation))
        try:
            host, pid, token, expires_at, released, now = self._fetchall(self._sql(query))[0]
        except WarehouseError:
            return None
        return Holder(generation, host, int(pid), token, int(expires_at), bool(released), int(now))

    def _definition(self, released: bool = False) -> exp.Select:
        now = int(self._fetchall("SELECT unix_timestamp()")[0][0])
        values = {"host": exp.Literal.string(socket.gethostname()), "pid": exp.Literal.number(os.getpid()),
                  "token": exp.Literal.string(self.token),
                  "expires_at": exp.cast(exp.Literal.number(now + (0 if released else LEASE_SECONDS)), "BIGINT"),
                  "released": exp.Boolean(this=released)}
        return exp.select(*[exp.alias_(v, k) for k, v in values.items()])

    def take(self) -> None:
        """Hold the lease, or WarehouseError KPI184 naming the run that holds it. Held already: checked and
        renewed now (KPI185 if it was taken over)."""
        if self.generation is not None:
            self.renew(force=True)
            return
        self._execute(self._sql(exp.Create(this=exp.Table(this=exp.to_identifier(self.schema, quoted=True)),
                                           kind="SCHEMA", exists=True)))
        holder = None
        for _ in range(ATTEMPTS):
            generations = self._generations()
            top = generations[-1] if generations else 0
            holder = self._read(top) if top else None
            if top and holder is None:
                continue  # dropped meanwhile: a newer holder
            if holder is not None and not holder.free():
                raise self._held(holder)
            try:
                self._execute(self._sql(exp.Create(this=self._t(top + 1), kind="VIEW", expression=self._definition())))
            except WarehouseError:
                continue  # another client created it first: read who
            self.generation = top + 1
            self._renewed = time.monotonic()
            for old in generations:  # what lost the race may read them: only the holder's stays
                self._execute(self._sql(exp.Drop(tables=[self._t(old)], kind="VIEW", exists=True)))
            return
        raise self._held(holder)

    def _held(self, holder: Holder | None) -> WarehouseError:
        who = str(holder) if holder is not None and not holder.free() else "another run that took it at the same moment"
        message = (f"another kpimetrics run is writing output schema '{self.schema}': its lease in the catalog is held "
                   f"by {who}. Wait for that run to finish and retry (a killed run's lease is free once it expires, "
                   f"or at once on the host it ran on)")
        return WarehouseError(message, [error("KPI184", message)])

    def renew(self, force: bool = False) -> None:
        """Extend the lease (at most every RENEW_AFTER seconds unless `force`), after checking it is still this
        run's: WarehouseError KPI185 if another run took it over."""
        if self.generation is None or (not force and time.monotonic() - self._renewed < RENEW_AFTER):
            return
        generations = self._generations()
        top = generations[-1] if generations else None
        holder = self._read(top) if top is not None else None
        if top != self.generation or holder is None or holder.token != self.token:
            lost = self.generation
            self.generation = None
            message = (f"this run lost its lease on output schema '{self.schema}' ({PREFIX}{lost}) to "
                       f"{holder or 'another run'}: it stalled past the lease ({LEASE_SECONDS} s) and another run took "
                       f"over. Nothing of this run was published; the other run's stands")
            raise WarehouseError(message, [error("KPI185", message)])
        self._renewed = time.monotonic()
        self._execute(self._alter_sql(self._definition()))

    def _alter_sql(self, definition: exp.Select) -> str:
        # sqlglot has no ALTER VIEW ... AS; the statement is kpimetrics' own names and literals only
        return f"ALTER VIEW {self._sql(self._t(self.generation))} AS {self._sql(definition)}"

    def release(self) -> None:
        """Mark the lease released (best effort: a lease that cannot be released expires)."""
        if self.generation is None:
            return
        try:
            generations = self._generations()
            if generations and generations[-1] == self.generation:
                self._execute(self._alter_sql(self._definition(released=True)))
        except WarehouseError:
            pass
        finally:
            self.generation = None


def lease_view(name: str) -> bool:
    """Whether a relation of an output schema is a lease view (not an output table)."""
    return re.fullmatch(re.escape(PREFIX) + r"[0-9]+", name) is not None

