"""The EICAR anti-virus test file (https://www.eicar.org/download-anti-malware-testfile/):
the one content the emulator's malware scanner reports as a threat (localaws.malware_scan), and
what the local run uploads to show a file stopped at the gate. No moto import: the local run's
own process uses it.
"""

from __future__ import annotations

# Assembled from parts so that this source file is not itself reported by a virus scanner on
# a developer's machine or in CI.
EICAR_TEST_STRING = (b"X5O!P%@AP[4\\PZX54(P^)7CC)7}$" + b"EICAR-STANDARD-ANTIVIRUS-"
                     + b"TEST-FILE!$H+H*")
# The name GuardDuty's engine gives it (as the Bitdefender engine names the EICAR file).
EICAR_THREAT = "EICAR-Test-File (not a virus)"
