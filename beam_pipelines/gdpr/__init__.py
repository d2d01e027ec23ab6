"""GDPR: personal data protected at ingestion, and people's rights honoured in every store.

* :mod:`~beam_pipelines.gdpr.secrets` — pseudonym and master keys (file or environment).
* :mod:`~beam_pipelines.gdpr.policy`, :mod:`~beam_pipelines.gdpr.protect` — which fields are
  personal data; pseudonymisation (HMAC-SHA-256), encryption (AES-GCM, per-subject keys) and
  the tombstone filter, on Arrow tables (the Beam step: :mod:`beam_pipelines.transforms.protect`).
* :mod:`~beam_pipelines.gdpr.keystore`, :mod:`~beam_pipelines.gdpr.tombstones`,
  :mod:`~beam_pipelines.gdpr.audit` — the key store, erased subjects and the audit trail, in the
  warehouse.
* :mod:`~beam_pipelines.gdpr.access`, :mod:`~beam_pipelines.gdpr.erase`,
  :mod:`~beam_pipelines.gdpr.retention` — the commands (``python -m beam_pipelines.gdpr``), over
  the stores in :mod:`beam_pipelines.gdpr.stores`.
"""
