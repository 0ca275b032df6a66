"""Black-box fixtures: the real ``eventodb`` CLI in a subprocess (:mod:`tests.support.server`),
driven over HTTP with httpx.

Server processes are shared per module and backend; tests keep to their own namespaces
(``tenant`` gives each test a fresh one) so they do not see each other.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.server import ADMIN_TOKEN, Server, Tenant, make_tenant, serve_per_param

BACKENDS = [
    "sqlite",
    "test-mode",
    pytest.param("postgres", marks=pytest.mark.postgres),
]


@pytest.fixture(scope="module", params=BACKENDS)
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    """A server per backend, shared by the tests of one module; the admin token is
    :data:`ADMIN_TOKEN`."""
    yield from serve_per_param(request, tmp_path_factory, "server")


@pytest.fixture(
    scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def prod_server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    """A production-mode server (strict auth) per persistent backend."""
    yield from serve_per_param(request, tmp_path_factory, "prod")


@pytest.fixture
def tenant(server: Server) -> Iterator[Tenant]:
    t = make_tenant(server)
    yield t
    server.rpc(ADMIN_TOKEN, "ns.delete", t.namespace)
