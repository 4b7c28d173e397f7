"""The access matrix proves it bites: each deliberate breakage of the synthesized policies
(security/matrix_mutations.py) is reported, in the direction it should be (a leak, or a broken
workflow or service integration)."""

from __future__ import annotations

import pytest

from security.access_matrix import MatrixResult, Universe, describe
from security.matrix_model import MatrixRequest, Who
from security.matrix_mutations import (
    MUTATIONS,
    Mutation,
    caught,
    run_mutations,
    without_role_action,
)

ROLE_OWNER = "mx-user-both"


def _role_actions(universe: Universe) -> list[str]:
    (role,) = (p for p in universe.principals
               if p.who is Who.ROTATION and p.role_of == ROLE_OWNER)
    return sorted({a for policy_id in role.policies
                   for s in universe.documents[policy_id]["Statement"]
                   for a in ([s["Action"]] if isinstance(s["Action"], str) else s["Action"])})


@pytest.fixture(scope="module")
def mutated(universe: Universe, matrix_requests: list[MatrixRequest],
            matrix: MatrixResult) -> dict[str, MatrixResult]:
    """Every mutation, plus one per action of a rotation role, evaluated in one batch."""
    assert not matrix.disagreements  # the unmutated policies agree with the rules
    role_mutations = [Mutation(f"rotation-role-without-{action}", f"without {action}",
                               "broken workflow", without_role_action(ROLE_OWNER, action))
                      for action in _role_actions(universe)]
    return run_mutations(universe, matrix_requests, [*MUTATIONS, *role_mutations])


@pytest.mark.parametrize("mutation", MUTATIONS, ids=[m.name for m in MUTATIONS])
def test_the_matrix_reports_each_mutation(mutation: Mutation,
                                          mutated: dict[str, MatrixResult]):
    result = mutated[mutation.name]
    assert result.outcomes, f"{mutation.name}: no request reads the mutated policy"
    assert caught(result, mutation), (
        f"{mutation.name} ({mutation.says}) was not reported as a {mutation.catches}; "
        f"{len(result.outcomes)} requests re-evaluated")
    print(f"{mutation.name}: {describe(result.disagreements[0])}")


def test_removing_any_action_from_the_rotation_role_is_reported(
        universe: Universe, mutated: dict[str, MatrixResult]):
    """Every action the rotation role holds is one its code (or the Lambda runtime, or the
    services it uses) needs: taking any one away breaks a call the rules expect."""
    actions = _role_actions(universe)
    assert "secretsmanager:PutSecretValue" in actions and "kms:Decrypt" in actions
    missed = [action for action in actions
              if not mutated[f"rotation-role-without-{action}"].denied_expected_allows]
    assert not missed, f"removing these went unnoticed: {missed}"
