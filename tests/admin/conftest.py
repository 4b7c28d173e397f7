"""Real servers for the custody command's tests: PostgreSQL and moto, one of each for this
package, started only when a test asks for them (test_cli.py does not)."""

from tests.importer.support import customer, emulator, importer, queues  # noqa: F401 - fixtures
from tests.servers import aws_env, db, dsn, moto_endpoint, postgres  # noqa: F401 - fixtures
