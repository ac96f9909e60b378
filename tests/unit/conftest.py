"""The unit tier runs without a database (`make unit`, in seconds): a unit test that asks for
one fails at once instead of quietly starting a server."""

import pytest


@pytest.fixture(scope="session")
def pg_admin_url() -> str:
    pytest.fail("a unit test asked for a database; move it to tests/integration")
