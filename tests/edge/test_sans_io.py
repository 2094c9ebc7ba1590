"""The protocol modules of the edge stay sans-IO: no trio, sockets, clocks or threads."""

import ast
from pathlib import Path

import edge

SANS_IO = ["jid", "errors", "cert_names", "conn_limits", "rate_limit", "xmlstream", "stanza", "dialback", "s2s_events", "s2s_stream", "s2s_inbound",
           "s2s_outbound", "srv", "services/__init__", "services/dispatch", "services/disco", "services/echo",
           "services/ping", "services/version", "payload", "registry", "router"]
FORBIDDEN = {"trio", "socket", "time", "asyncio", "threading", "ssl", "selectors"}


def imported_modules(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def test_sans_io_modules_import_no_io():
    root = Path(edge.__file__).parent
    for name in SANS_IO:
        bad = imported_modules(root / f"{name}.py") & FORBIDDEN
        assert not bad, f"edge/{name}.py imports {bad}"
