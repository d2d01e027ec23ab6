"""Data quality: ``spec`` (the declared expectations), ``measure`` (mergeable measurements and
scores, no Beam). ``transforms/quality.py`` runs them in a pipeline."""
