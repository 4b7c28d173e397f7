"""phi_core: the rules every part of the exchange imports, each written once.

Pure functions and constants returning plain data (dicts, strings, dataclasses), with no CDK,
no boto3 and no I/O: the CDK stacks wrap them (``iam.PolicyStatement.from_json``), the operator
CLI, the local run, the rotation Lambda (packaged as a layer) and the partner's client use them
as they are, and the tests test them once.

- :mod:`phi_core.naming`: every physical name derived from a customer slug;
- :mod:`phi_core.vocabulary`: access modes and directions;
- :mod:`phi_core.defaults`: the settings that cross parts (rotation timeline, retention);
- :mod:`phi_core.partner_policy`: what a partner may do, and the denies that bound it;
- :mod:`phi_core.rotation_policy`: what the rotation function's role may do;
- :mod:`phi_core.key_fate`: each access key's fate on the rotation timeline;
- :mod:`phi_core.outputs` and :mod:`phi_core.secret`: the stack outputs and the partner
  secret, the contracts between the stack, the operator, the Lambda and the client.
"""
