"""Real servers for the importer tests: PostgreSQL and moto, one of each for this package."""

from tests.importer.support import customer, emulator, importer, queues  # noqa: F401 - fixtures
from tests.servers import aws_env, db, dsn, moto_endpoint, postgres  # noqa: F401 - fixtures
