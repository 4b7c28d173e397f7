"""Offline proofs of the security model: the access matrix (IAM evaluation of the synthesized
templates), the template and policy scanners. Test and audit tooling only; nothing here is
deployed or imported by the CDK app."""
