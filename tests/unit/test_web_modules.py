"""The web page's JavaScript: small native ES modules, loaded by index.html without a build step.

Checked from the sources (no browser): index.html loads ``app.js`` as a module and no classic script;
each module of the page (app.js and what it imports) stays under MAX_LINES, imports files under ``web/``
and only names they export, without a cycle; every file under ``web/js/`` is used. The browser walk is
tests/e2e/test_web.py.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

WEB = Path(__file__).resolve().parents[2] / "web"
MAX_LINES = 300
IMPORT = re.compile(r'^import\s*\{([^}]*)\}\s*from\s*"([^"]+)";', re.MULTILINE)
ANY_IMPORT = re.compile(r'^\s*import\b.*?from\s*"([^"]+)"|^\s*import\s*"([^"]+)"', re.MULTILINE)
EXPORT = re.compile(r"^export\s+(?:async\s+)?(?:function\*?|const|let|class)\s+([A-Za-z_$][\w$]*)", re.MULTILINE)
SCRIPT = re.compile(r"<script\b([^>]*)>", re.IGNORECASE)


APP = (WEB / "app.js").resolve()


def _target(module: Path, spec: str) -> Path:
    assert spec.startswith(("./", "../")), f"{module.name}: bare or remote import {spec!r}"
    return (module.parent / spec).resolve()


def _graph() -> dict[Path, set[Path]]:
    """The page's modules: app.js and every module it imports, each with the modules it imports."""
    graph: dict[Path, set[Path]] = {}
    todo = [APP]
    while todo:
        path = todo.pop()
        if path in graph:
            continue
        assert path.is_file() and WEB in path.parents, f"an import names {path}, which is not a file under web/"
        graph[path] = {_target(path, a or b) for a, b in ANY_IMPORT.findall(path.read_text())}
        todo.extend(graph[path])
    return graph


def test_index_loads_the_app_as_one_module():
    scripts = SCRIPT.findall((WEB / "index.html").read_text())
    assert scripts, "index.html loads no script"
    assert len(scripts) == 1, scripts
    attrs = scripts[0]
    assert re.search(r'type="module"', attrs) and re.search(r'src="app\.js"', attrs), attrs


@pytest.mark.parametrize("path", sorted(_graph()), ids=lambda p: str(p.relative_to(WEB)))
def test_each_module_is_small(path):
    lines = path.read_text().count("\n")
    assert lines <= MAX_LINES, f"{path.relative_to(WEB)} has {lines} lines (at most {MAX_LINES})"


def test_every_module_under_js_is_used():
    unused = sorted(p.name for p in (WEB / "js").rglob("*.js") if p.resolve() not in _graph())
    assert not unused, f"modules nothing imports: {unused}"


def test_imports_name_existing_exports():
    for path in _graph():
        text = path.read_text()
        assert "window.KP" not in text, f"{path.name} still shares names through window.KP"
        for names, spec in IMPORT.findall(text):
            exported = set(EXPORT.findall(_target(path, spec).read_text()))
            for name in (n.strip().split(" as ")[0] for n in names.split(",") if n.strip()):
                assert name in exported, f"{path.name} imports {name} from {spec}, which does not export it"


def test_no_import_cycle():
    graph = _graph()
    done: set[Path] = set()

    def visit(node: Path, stack: list[Path]) -> None:
        if node in stack:
            cycle = [*stack[stack.index(node) :], node]
            pytest.fail("import cycle: " + " -> ".join(p.name for p in cycle))
        if node in done:
            return
        for nxt in sorted(graph[node]):
            visit(nxt, [*stack, node])
        done.add(node)

    visit(APP, [])
    assert len(graph) > 5, sorted(p.name for p in graph)  # the page is split into modules


def test_scripts_are_javascript_whatever_the_host_mime_types_say(monkeypatch):
    """A host whose mime.types (or registry) maps .js to text/plain would break every module import."""
    import mimetypes

    from werkzeug.middleware.shared_data import SharedDataMiddleware
    from werkzeug.test import Client
    from werkzeug.wrappers import Response

    from kubepredict.runtimes.gateway import _module_script_type

    monkeypatch.setattr(mimetypes, "guess_type", lambda *args, **kwargs: ("text/plain", None))
    static = SharedDataMiddleware(
        Response('{"error": {}}', 404, content_type="application/json"), {"/ui": str(WEB)}, cache=False
    )
    client = Client(lambda environ, start: static(environ, _module_script_type(environ, start)))
    for path in ("/ui/app.js", "/ui/js/client.js"):
        r = client.get(path)
        assert r.status_code == 200 and r.headers["Content-Type"] == "text/javascript; charset=utf-8"
    assert client.get("/ui/style.css").headers["Content-Type"].startswith("text/plain")  # only scripts are pinned
    r = client.get("/ui/js/missing.js")
    assert r.status_code == 404 and r.headers["Content-Type"] == "application/json"
