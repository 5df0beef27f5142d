"""Fixtures for testing one emulator in-process, behind TLS, with the real SDKs."""
import ssl
import threading

import pytest

from tests.sandbox.tls import make_tls


@pytest.fixture(scope="session")
def sandbox_tls(tmp_path_factory):
    """(ca_path, cert_path, key_path) of a fresh sandbox CA."""
    return make_tls(str(tmp_path_factory.mktemp("tls")))


@pytest.fixture
def serve(sandbox_tls):
    """serve(make_server, tls=True, **kw) -> base URL of an emulator running in a thread."""
    servers = []

    def _serve(make_server, tls=True, **kwargs):
        server = make_server("127.0.0.1", 0, **kwargs)
        scheme = "http"
        if tls:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(sandbox_tls[1], sandbox_tls[2])
            server.socket = context.wrap_socket(server.socket, server_side=True)
            scheme = "https"
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"{scheme}://127.0.0.1:{server.server_address[1]}"

    yield _serve
    for server in servers:
        server.shutdown()
        server.server_close()
