"""localrun: the project's one-command local run against a local AWS emulator.

``python -m localrun up --customer acme`` starts the emulator (:mod:`localaws`: moto on
localhost, TLS only), runs the real ``cdk bootstrap`` and ``cdk deploy`` against it, checks
what was deployed, runs the partner round trip and a key rotation, and prints a summary.
``python -m localrun down`` stops the emulator and removes the run directory.

Tooling, not product: nothing under stacks/, lambdas/ or transfer/ imports it.
"""
