"""Real servers for the importer tests: PostgreSQL and moto, one of each for this package."""

from tests.importer.support import (  # noqa: F401 - fixtures
    customer,
    emulator,
    importer,
    queues,
    receipt_public_key,
)
from tests.servers import aws_env, db, dsn, moto_endpoint, postgres  # noqa: F401 - fixtures
