"""What tests/ and bench/ share: fixtures, stand-ins and the contract suites.

Contract suites (optuna's `testing/pytest_samplers.py` idea): `proposer_contract`,
`judge_contract` and `executor_contract` hold one behavioural suite per interface, as a base
class of `test_*` methods; a test module subclasses it once per implementation. The other
modules are plain helpers by theme: `toy` (task repositories), `gitutil` (git and journal
agree), `nights` (a toy night for proposers called directly, scripted proposers), `procs`
(the CLI in other processes), `attacks` (the adversarial suite's night), `judges` (journal
objects without a journal), `fake_llm` / `agents` / `fake_agent.py` (model stand-ins),
`nanogpt` (the shrunken built-in task), `val_fitter` (an attack), and `fixtures` (pytest
fixtures, registered by tests/conftest.py).

Nothing in the package imports this one: `import overnight` and the CLI never load pytest.
Modules here may import pytest; tests and benchmarks import them, never each other.
"""
