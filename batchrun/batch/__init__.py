"""Provider batch APIs: ``mode: batch`` models answered at half price within a day.

``mode`` decides which models go through a batch API; ``lines`` builds the
JSONL lines and splits them within each API's limits; ``openai`` and
``anthropic`` speak the two lifecycles; ``results`` turns answer lines into
result rows; ``lane`` runs the cron lifecycle for a run (collect, submit,
wait), its batches recorded in the output's ``remote_work.RemoteRecord``.
"""
