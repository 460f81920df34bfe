"""`splitbrain serve [STORE]`: a local web UI over the store (Jepsen's `lein run serve`).

- store.py  reads the store: the runs (and their state: complete, incomplete, broken), the
            campaigns (`<store>/campaigns/<name>/<timestamp>/campaign.json`), one run's page
            data, and `resolve_in_store`, the one gate every served path goes through.
- app.py    the HTTP server (the standard library's ThreadingHTTPServer): routes, content
            types, security headers.
- templates/  the pages (jinja2, autoescaped; inline CSS and script, nothing from a network).

Security contract: every value shown is HTML-escaped (jinja2 autoescape; JSON inside scripts via
`tojson`); no file outside the store is ever read (paths are resolved, symlinks included, and
must stay under the store's resolved root; `..`, absolute and encoded paths give 404); files a
node wrote (`nodes/...`) and every file that is not one of our reports are served as text/plain
under a sandboxing Content-Security-Policy, never as HTML; every page forbids loads from other
origins (CSP), so the UI works with no network and cannot leak to one.
"""

from .app import make_server, serve_forever

__all__ = ["make_server", "serve_forever"]
