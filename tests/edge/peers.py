"""Real Prosody and ejabberd servers on loopback, private to one test run.

Each peer gets its own configuration and data directory, non-default ports on 127.0.0.1,
and a map from remote domains to loopback ports (there is no DNS here):

- Prosody 0.12.3 has no static s2s route option, so a tiny module on ``plugin_paths`` wraps
  ``net.adns``'s resolver and answers SRV for the mapped domains with a numeric target.
- ejabberd reads an ``inetrc`` that points its resolver at a small DNS responder on loopback
  (:class:`DnsResponder`), which answers SRV for the mapped domains.

The servers are installed with apt-get when missing (the tests run as root).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from ..debian import apt_install

STARTUP_TIMEOUT = 20.0


def ensure_installed(command: str, package: str) -> str:
    """Path of ``command``, installing the Debian ``package`` first if needed."""
    found = shutil.which(command) or (f"/usr/sbin/{command}" if os.path.exists(f"/usr/sbin/{command}") else None)
    if found:
        return found
    apt_install(package)
    # Packages start system-wide services where systemd runs: we want private instances only.
    for unit in (package,):
        subprocess.run(["systemctl", "disable", "--now", unit], capture_output=True, timeout=60)
    found = shutil.which(command) or (f"/usr/sbin/{command}" if os.path.exists(f"/usr/sbin/{command}") else None)
    if not found:
        raise RuntimeError(f"{package} installed but {command} not found")
    return found


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, timeout: float = STARTUP_TIMEOUT, proc: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode} before listening on {port}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout}s")


_PROSODY_ROUTES_MODULE = r"""
-- Test-only: answer SRV lookups for mapped domains with a loopback target (no DNS here).
-- loopback_s2s_routes answers _xmpp-server (STARTTLS), loopback_s2s_tls_routes _xmpps-server
-- (XEP-0368 direct TLS); a mapped domain gets no other answer.
local adns = require "net.adns";
local routes = module:get_option("loopback_s2s_routes", {});
local tls_routes = module:get_option("loopback_s2s_tls_routes", {});
local original = adns.resolver;
local services = { { "_xmpp-server._tcp.", routes }, { "_xmpps-server._tcp.", tls_routes } };

local function records(port)
	-- One port, or a list tried in order (several edges serving one domain).
	local ports = type(port) == "table" and port or { port };
	local out = {};
	for i, p in ipairs(ports) do
		out[i] = { srv = { priority = i - 1, weight = 0, port = p, target = "127.0.0.1" } };
	end
	return out;
end

local function wrapped()
	local real = original();
	local proxy = {};
	function proxy:lookup(handler, qname, qtype, qclass)
		local name = tostring(qname):gsub("%.$", ""):lower();
		for _, service in ipairs(services) do
			local prefix, map = service[1], service[2];
			local domain = name:sub(1, #prefix) == prefix and name:sub(#prefix + 1);
			if domain and (routes[domain] ~= nil or tls_routes[domain] ~= nil) then
				handler((qtype == "SRV" and map[domain] ~= nil) and records(map[domain]) or {});
				return;
			end
		end
		if routes[name] ~= nil or tls_routes[name] ~= nil then
			handler({});
			return;
		end
		return real:lookup(handler, qname, qtype, qclass);
	end
	return setmetatable(proxy, { __index = function (_, key)
		local value = real[key];
		if type(value) == "function" then
			return function (_, ...) return value(real, ...); end
		end
		return value;
	end });
end

adns.resolver = wrapped;
function module.unload() adns.resolver = original; end
"""


def _lua_routes(routes: dict[str, int | list[int]]) -> str:
    return "; ".join(f'["{d}"] = {{ {", ".join(map(str, p))} }}' if isinstance(p, list) else f'["{d}"] = {p}'
                     for d, p in routes.items())


@dataclass
class ProsodyPeer:
    """A private Prosody 0.12 on loopback. Use as a context manager."""

    domain: str
    workdir: Path
    routes: dict[str, int | list[int]] = field(default_factory=dict)  # remote domain -> loopback port(s)
    tls_routes: dict[str, int | list[int]] = field(default_factory=dict)  # ... for direct TLS (_xmpps-server)
    direct_tls: bool = False  # listen for direct TLS s2s too (s2s_direct_tls_ports), on s2s_tls_port
    users: dict[str, str] = field(default_factory=dict)  # localpart -> password
    require_encryption: bool = False
    certificate: tuple[Path, Path] | None = None  # (cert, key) enables TLS
    cafile: Path | None = None  # trust anchors for peer certificates (enables SASL EXTERNAL)
    extra_modules: tuple[str, ...] = ()
    log_level: str = "debug"  # benchmarks use "warn": debug logging costs Prosody most of its time
    c2s_port: int = 0
    s2s_port: int = 0
    s2s_tls_port: int = 0
    proc: subprocess.Popen | None = None

    def __post_init__(self) -> None:
        self.binary = ensure_installed("prosody", "prosody")
        self.workdir = Path(self.workdir)
        self.c2s_port = self.c2s_port or free_port()
        self.s2s_port = self.s2s_port or free_port()
        if self.direct_tls:
            self.s2s_tls_port = self.s2s_tls_port or free_port()
        self.config_path = self.workdir / "prosody.cfg.lua"
        self.log_path = self.workdir / "prosody.log"

    def write_config(self) -> None:
        plugins = self.workdir / "plugins"
        plugins.mkdir(parents=True, exist_ok=True)
        (self.workdir / "data").mkdir(exist_ok=True)
        (plugins / "mod_loopback_s2s_routes.lua").write_text(_PROSODY_ROUTES_MODULE)
        modules = ["roster", "saslauth", "dialback", "disco", "ping", "loopback_s2s_routes", *self.extra_modules]
        if self.certificate:
            modules.append("tls")
        ssl = ""
        if self.certificate:
            cert, key = self.certificate
            cafile = f'cafile = "{self.cafile}";' if self.cafile else ""
            ssl = f'ssl = {{ certificate = "{cert}"; key = "{key}"; {cafile} }}'
        w = self.workdir
        self.config_path.write_text(f"""
local mods = {{ {"; ".join(f'"{m}"' for m in modules)} }}
modules_enabled = mods
modules_disabled = {{ "s2s_bidi" }}
pidfile = "{w}/prosody.pid"
data_path = "{w}/data"
admin_socket = "{w}/prosody.sock"
plugin_paths = {{ "{w}/plugins" }}
log = {{ {self.log_level} = "{self.log_path}" }}
run_as_root = true
interfaces = {{ "127.0.0.1" }}
use_ipv6 = false
c2s_ports = {{ {self.c2s_port} }}
s2s_ports = {{ {self.s2s_port} }}
c2s_direct_tls_ports = {{ }}
s2s_direct_tls_ports = {{ {self.s2s_tls_port if self.direct_tls else ""} }}
http_ports = {{ }}
https_ports = {{ }}
authentication = "internal_plain"
c2s_require_encryption = false
allow_unencrypted_plain_auth = true
s2s_require_encryption = {"true" if self.require_encryption else "false"}
s2s_secure_auth = false
s2s_timeout = 15
loopback_s2s_routes = {{ {_lua_routes(self.routes)} }}
loopback_s2s_tls_routes = {{ {_lua_routes(self.tls_routes)} }}
{ssl}
VirtualHost "{self.domain}"
""")

    def register_users(self) -> None:
        for user, password in self.users.items():
            subprocess.run(["prosodyctl", "--config", str(self.config_path), "register", user, self.domain, password],
                           check=True, capture_output=True, timeout=30)

    def start(self) -> None:
        self.write_config()
        self.register_users()
        self.proc = subprocess.Popen([self.binary, "-F", "--config", str(self.config_path)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        wait_for_port(self.c2s_port, proc=self.proc)
        wait_for_port(self.s2s_port, proc=self.proc)
        if self.direct_tls:
            wait_for_port(self.s2s_tls_port, proc=self.proc)

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        self.proc = None

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def __enter__(self) -> ProsodyPeer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def make_ca(directory: Path, name: str = "ringmesh test CA"):
    """A throwaway CA: returns (cert object, key object, PEM path)."""
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                         content_commitment=False, key_encipherment=False, data_encipherment=False,
                                         key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
            .sign(key, hashes.SHA256()))
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "ca.crt"
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    path.chmod(0o644)
    return cert, key, path


def make_certificate(domain: str, directory: Path, *, purposes: tuple[str, ...] = ("server", "client"),
                     ca: tuple | None = None) -> tuple[Path, Path]:
    """A certificate for ``domain`` (self-signed, or signed by ``ca`` = (cert, key) objects).

    ``purposes`` picks the extended key usages: ("server",) gives a serverAuth-only
    certificate, as many public CAs now issue.
    """
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, domain)])
    now = datetime.datetime.now(datetime.timezone.utc)
    usages = {"server": ExtendedKeyUsageOID.SERVER_AUTH, "client": ExtendedKeyUsageOID.CLIENT_AUTH}
    issuer_cert, issuer_key = ca if ca else (None, key)
    builder = (x509.CertificateBuilder().subject_name(name)
               .issuer_name(issuer_cert.subject if issuer_cert else name)
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - datetime.timedelta(days=1)).not_valid_after(now + datetime.timedelta(days=30))
               .add_extension(x509.SubjectAlternativeName([x509.DNSName(domain)]), critical=False)
               .add_extension(x509.ExtendedKeyUsage([usages[p] for p in purposes]), critical=False))
    cert = builder.sign(issuer_key, hashes.SHA256())
    directory.mkdir(parents=True, exist_ok=True)
    cert_path, key_path = directory / f"{domain}.crt", directory / f"{domain}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    key_path.chmod(0o644)  # the servers drop privileges on some setups
    return cert_path, key_path


# -- a slixmpp client in its own thread (slixmpp runs on asyncio, the tests on trio) -------

@dataclass
class ClientResult:
    received: list = field(default_factory=list)  # (kind, from, body or payload tag, id)
    iq_results: dict = field(default_factory=dict)  # iq id -> xml string of the answer
    error: str | None = None
    connected: bool = False


def run_client(jid: str, password: str, port: int, script, timeout: float = 20.0,
               plugins: tuple[str, ...] = ("xep_0030", "xep_0092", "xep_0199")) -> ClientResult:
    """Run an unmodified slixmpp client: connect, ``await script(client, result)``, disconnect.

    Blocking (call it through ``trio.to_thread.run_sync``). ``script`` is an asyncio coroutine
    function; it may use ``client.wait_for(predicate, timeout)`` to wait for received stanzas.
    """
    import asyncio

    import slixmpp

    result = ClientResult()

    async def main() -> None:
        client = slixmpp.ClientXMPP(jid, password)
        client.plugin["feature_mechanisms"].unencrypted_plain = True
        client.enable_starttls = False
        client.enable_direct_tls = False
        client.enable_plaintext = True
        for plugin in plugins:
            client.register_plugin(plugin)
        arrived = asyncio.Event()
        session = asyncio.Event()

        def on_message(msg) -> None:
            result.received.append(("message", str(msg["from"]), msg["body"], msg["id"], str(msg)))
            arrived.set()

        client.add_event_handler("message", on_message)
        client.add_event_handler("message_error", on_message)  # bounces count as received too
        client.add_event_handler("session_start", lambda _: session.set())
        client.add_event_handler("failed_auth", lambda _: session.set())

        async def wait_for(predicate, wait: float = 10.0) -> bool:
            deadline = asyncio.get_running_loop().time() + wait
            while not predicate(result):
                remaining = deadline - asyncio.get_running_loop().time()
                if remaining <= 0:
                    return False
                arrived.clear()
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(arrived.wait(), remaining)
            return True

        client.wait_for = wait_for  # type: ignore[attr-defined]
        client.connect(host="127.0.0.1", port=port)
        try:
            await asyncio.wait_for(session.wait(), 10)
            result.connected = True
            await script(client, result)
        except Exception as exc:  # reported to the test, which asserts on it
            result.error = f"{type(exc).__name__}: {exc}"
        finally:
            client.disconnect()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(client.disconnected, 5)

    def runner() -> None:
        asyncio.run(asyncio.wait_for(main(), timeout))

    thread = threading.Thread(target=runner, daemon=True)
    thread.start()
    thread.join(timeout + 10)
    if thread.is_alive():
        result.error = "client thread did not finish"
    return result


# -- ejabberd -------------------------------------------------------------------------------

def _descendants(pid: int) -> list[int]:
    """Pids of the processes started (transitively) by ``pid``, from /proc."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError, ValueError):
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
                children.setdefault(ppid, []).append(int(entry.name))
    out, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


class DnsResponder:
    """A loopback DNS server answering SRV ``_xmpp-server._tcp.DOMAIN`` with ``0 0 PORT 127.0.0.1``
    for mapped domains (``_xmpps-server._tcp`` for ``tls_routes``: direct TLS), and NOERROR with
    no records for every other name.

    Runs in a daemon thread with a bounded poll loop; ``close()`` stops it.
    """

    def __init__(self, routes: dict[str, int], tls_routes: dict[str, int] | None = None) -> None:
        self.routes = {d.lower(): p for d, p in routes.items()}
        self.tls_routes = {d.lower(): p for d, p in (tls_routes or {}).items()}
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.queries: list[tuple[str, str]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _answer(self, data: bytes) -> bytes | None:
        import dns.message
        import dns.rcode
        import dns.rdatatype
        import dns.rrset

        try:
            query = dns.message.from_wire(data)
        except Exception:
            return None
        response = dns.message.make_response(query)
        response.set_rcode(dns.rcode.NOERROR)
        for question in query.question:
            name = question.name.to_text().rstrip(".").lower()
            self.queries.append((name, dns.rdatatype.to_text(question.rdtype)))
            for service, routes in (("_xmpp-server", self.routes), ("_xmpps-server", self.tls_routes)):
                for domain, port in routes.items():
                    if name == f"{service}._tcp.{domain}" and question.rdtype == dns.rdatatype.SRV:
                        response.answer.append(dns.rrset.from_text(question.name, 60, "IN", "SRV",
                                                                   f"0 0 {port} 127.0.0.1."))
        return response.to_wire()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                data, addr = self.sock.recvfrom(4096)
            except (TimeoutError, socket.timeout):
                continue
            except OSError:
                return
            reply = self._answer(data)
            if reply is not None:
                with contextlib.suppress(OSError):
                    self.sock.sendto(reply, addr)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
        self.sock.close()


@dataclass
class EjabberdPeer:
    """A private ejabberd 23.01 on loopback. Use as a context manager (runs as user ejabberd)."""

    domain: str
    routes: dict[str, int] = field(default_factory=dict)
    tls_routes: dict[str, int] = field(default_factory=dict)  # answered as _xmpps-server (direct TLS)
    direct_tls: bool = False  # a direct TLS s2s listener too (tls: true), on s2s_tls_port
    users: dict[str, str] = field(default_factory=dict)
    certificate: tuple[Path, Path] | None = None
    c2s_port: int = 0
    s2s_port: int = 0
    s2s_tls_port: int = 0
    proc: subprocess.Popen | None = None

    def __post_init__(self) -> None:
        import tempfile

        self.binary = ensure_installed("ejabberdctl", "ejabberd")
        # The servers' user must reach the directory, so not under pytest's 0700 tmp tree.
        self.workdir = Path(tempfile.mkdtemp(prefix="ringmesh-ejabberd-"))
        self.c2s_port = self.c2s_port or free_port()
        self.s2s_port = self.s2s_port or free_port()
        if self.direct_tls:
            self.s2s_tls_port = self.s2s_tls_port or free_port()
        self.dist_port = free_port()
        self.node = f"ejabberd_test_{self.s2s_port}@localhost"
        self.dns: DnsResponder | None = None

    @property
    def log_path(self) -> Path:
        return self.workdir / "logs" / "ejabberd.log"

    def _ctl(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
        w = self.workdir
        return subprocess.run([self.binary, "--config-dir", str(w), "--ctl-config", str(w / "ejabberdctl.cfg"),
                               "--logs", str(w / "logs"), "--spool", str(w / "spool"), "--node", self.node, *args],
                              capture_output=True, text=True, timeout=timeout)

    def write_config(self) -> None:
        import pwd

        w = self.workdir
        for sub in ("logs", "spool"):
            (w / sub).mkdir(parents=True, exist_ok=True)
        self.dns = DnsResponder(self.routes, self.tls_routes)
        (w / "inetrc").write_text(
            "{resolv_conf, \"\"}.\n{hosts_file, \"\"}.\n{host, {127,0,0,1}, [\"localhost\"]}.\n"
            f"{{nameserver, {{127,0,0,1}}, {self.dns.port}}}.\n{{lookup, [file, dns]}}.\n")
        (w / "ejabberdctl.cfg").write_text(
            f"ERLANG_NODE={self.node}\nERL_DIST_PORT={self.dist_port}\nINET_DIST_INTERFACE=127.0.0.1\n")
        certs = ""
        if self.certificate:
            cert, key = self.certificate
            combined = w / "server.pem"
            combined.write_text(Path(cert).read_text() + Path(key).read_text())
            certs = f"certfiles:\n  - \"{combined}\"\n"
        starttls = "optional" if self.certificate else "false"
        direct = ""
        if self.direct_tls:
            direct = (f"  - port: {self.s2s_tls_port}\n    ip: \"127.0.0.1\"\n    module: ejabberd_s2s_in\n"
                      f"    shaper: none\n    tls: true\n")
        (w / "ejabberd.yml").write_text(f"""
hosts:
  - "{self.domain}"
loglevel: info
log_rotate_count: 0
{certs}
listen:
  - port: {self.c2s_port}
    ip: "127.0.0.1"
    module: ejabberd_c2s
    shaper: none
    access: c2s
    starttls: false
  - port: {self.s2s_port}
    ip: "127.0.0.1"
    module: ejabberd_s2s_in
    shaper: none
{direct}s2s_use_starttls: {starttls}
s2s_dns_retries: 1
s2s_dns_timeout: 5
s2s_access: s2s
auth_method: internal
auth_password_format: plain
acl:
  local:
    user_regexp: ""
access_rules:
  local:
    allow: local
  c2s:
    allow: all
  s2s:
    allow: all
modules:
  mod_disco: {{}}
  mod_ping: {{}}
  mod_roster: {{}}
  mod_s2s_dialback: {{}}
  mod_version: {{}}
""")
        user = pwd.getpwnam("ejabberd")
        for path in [w, *w.rglob("*")]:
            os.chown(path, user.pw_uid, user.pw_gid)

    def start(self) -> None:
        self.write_config()
        w = self.workdir
        self.proc = subprocess.Popen(
            [self.binary, "--config-dir", str(w), "--ctl-config", str(w / "ejabberdctl.cfg"), "--logs", str(w / "logs"),
             "--spool", str(w / "spool"), "--node", self.node, "foreground"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        wait_for_port(self.c2s_port, timeout=60, proc=self.proc)
        wait_for_port(self.s2s_port, timeout=20, proc=self.proc)
        if self.direct_tls:
            wait_for_port(self.s2s_tls_port, timeout=20, proc=self.proc)
        for user, password in self.users.items():
            done = self._ctl("register", user, self.domain, password)
            if done.returncode != 0:
                raise RuntimeError(f"ejabberdctl register failed: {done.stdout} {done.stderr}")

    def stop(self) -> None:
        if self.proc is not None:
            if self.proc.poll() is None:
                tree = _descendants(self.proc.pid)  # su starts erl in its own session
                done = self._ctl("stop", timeout=30)
                try:
                    self.proc.wait(timeout=20 if done.returncode == 0 else 1)
                except subprocess.TimeoutExpired:
                    for pid in [self.proc.pid, *tree]:
                        with contextlib.suppress(ProcessLookupError):
                            os.kill(pid, signal.SIGKILL)
                    self.proc.wait(timeout=5)
                for pid in tree:  # anything of ours still around (erl helpers)
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGTERM)
            self.proc = None
        if self.dns is not None:
            self.dns.close()
            self.dns = None

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def cleanup(self) -> None:
        shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> EjabberdPeer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
        self.cleanup()
