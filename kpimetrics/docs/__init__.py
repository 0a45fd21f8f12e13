"""The scorecard site: `kpimetrics docs generate` and `kpimetrics docs serve`.

read (data.py: output tables + manifest -> Site) -> draw (charts.py) -> render (site.py: HTML files).
"""
from __future__ import annotations

import functools
import http.server
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from ..errors import ConfigError
from .data import Site, build_site, read_tables
from .site import write_site

__all__ = ["generate", "serve", "Site", "DocsResult"]


@dataclass
class DocsResult:
    folder: Path
    pages: list[Path]
    site: Site

    @property
    def index(self) -> Path:
        return self.folder / "index.html"


def _sql_reader(target: Path, manifest: dict, dialect: str) -> Callable[[str], str | None]:
    def sql_of(name: str) -> str | None:
        rel = (manifest.get("kpis", {}).get(name, {}).get("compiled_sql") or {}).get(dialect)
        # the manifest's paths read target/compiled/...: the part after target/ is inside the target folder
        path = target.joinpath(*Path(rel).parts[1:]) if rel else None
        return path.read_text(encoding="utf-8") if path and path.is_file() else None

    return sql_of


def generate(project) -> DocsResult:
    """Compile (so target/ describes the project), read the output tables, write target/docs/."""
    compiled = project.compile()
    manifest = json.loads(compiled.manifest_path.read_text(encoding="utf-8"))
    d = project.definition
    with project.outputs() as out:
        rows = read_tables(out)
    site = build_site(d.config.name, rows, manifest, _sql_reader(d.paths.target, manifest, compiled.dialect), d.owners)
    folder = d.paths.target / "docs"
    pages = write_site(site, folder, sql_dialect=compiled.dialect, scrub=d.secrets.scrub)
    return DocsResult(folder, pages, site)


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format, *args):  # noqa: A002 - the stdlib's signature
        pass


def server(folder: Path, port: int = 8080, host: str = "127.0.0.1") -> http.server.ThreadingHTTPServer:
    """An HTTP server for the site on localhost (port 0: any free port); the caller serves it."""
    if not (folder / "index.html").is_file():
        raise ConfigError(f"no site in {folder}: run `kpimetrics docs generate` first")
    handler = functools.partial(_QuietHandler, directory=str(folder))
    return http.server.ThreadingHTTPServer((host, port), handler)


def serve(folder: Path, port: int = 8080, on_ready: Callable[[str], None] | None = None) -> None:
    """Serve the site until interrupted."""
    httpd = server(folder, port)
    host, real_port = httpd.server_address[:2]
    if on_ready:
        on_ready(f"http://{host}:{real_port}/")
    try:
        httpd.serve_forever()
    finally:
        httpd.server_close()
