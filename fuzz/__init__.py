"""Fuzzing harness: atheris targets (``fuzz_*.py``), their driver (``run_all.py``) and the
invariants they share with ``tests/reliability/test_fuzz_properties.py`` (``invariants.py``)."""
