"""partner-transfer: move health-data files to and from a partner exchange bucket on S3.

Every upload carries SSE-KMS with the customer's key, the expected bucket owner and a
full-object CRC64NVME that S3 verifies; every download is checked against the stored checksum
before it appears under its final name. See docs/client.md.

The Python API mirrors the command line::

    from partner_transfer import Client, load_profile
    client = Client(load_profile(Path("acme.toml")))
    results = client.upload([Path("batch-7")])
"""

__version__ = "0.1.0"

from partner_transfer.api import Client
from partner_transfer.errors import ExitCode, TransferError
from partner_transfer.options import Options
from partner_transfer.profile import Profile, load_profile
from partner_transfer.results import FileResult

# The former name of FileResult, kept for callers outside this package (tests/admin,
# tests/importer) until they move to the new name.
Outcome = FileResult

__all__ = [
    "Client",
    "ExitCode",
    "FileResult",
    "Options",
    "Outcome",
    "Profile",
    "TransferError",
    "__version__",
    "load_profile",
]
