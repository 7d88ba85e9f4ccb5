"""The shared fixtures live in overnight.testing.fixtures (with the helpers tests and benchmarks
share, in overnight.testing); registered here. Test modules import overnight.testing, never
another test module or a conftest."""

import pytest

# Before anything imports them: plain asserts in the shared helpers and the contract suites
# report their values as a test module's do.
pytest.register_assert_rewrite("overnight.testing")

pytest_plugins = ["overnight.testing.fixtures"]
