"""Bad flags, bad files and outputs over inputs, for every `umbert-hf` subcommand and training script.

Each case of `support/bad_inputs.py` runs the command in this process, in a case folder holding the user's own files,
and must end one of two ways:

- an input that must be refused: exit status 2, one `error:` line (ours or argparse's `prog: error: ...`) as the last
  line of stderr, no traceback;
- a control input (and an "either" input that is accepted): exit 0 and a result that passes the command's checks
  (metrics finite, weights saved, suggestions printed, ...).

Either way nothing the user owns is changed or deleted, and nothing is written outside the folders named on the
command line. Cases that need a trained model, or that train one, are marked `slow`. Builder cases already covered by
`test_builder_safety.py` are not repeated here.
"""

import pytest
from support.bad_inputs import BadInputFixtures, assert_outcome, make_cases, run_case

CASES = make_cases()


@pytest.fixture(scope="session")
def bad_input_fixtures(tmp_path_factory) -> BadInputFixtures:
    """The cases' shared inputs (a raw folder, datasets, embeddings, tiny trained models), each built on first use."""
    return BadInputFixtures(tmp_path_factory.mktemp("bad_inputs"))


def test_case_ids_are_unique():
    ids = [case.id for case in CASES]
    assert len(ids) == len(set(ids))


@pytest.mark.parametrize(
    "case", [pytest.param(case, id=case.id, marks=[pytest.mark.slow] if case.slow else []) for case in CASES]
)
def test_bad_input(case, bad_input_fixtures, tmp_path, monkeypatch, capsys):
    outcome = run_case(case, bad_input_fixtures, tmp_path, monkeypatch, capsys)
    assert_outcome(case, outcome)
