"""bincount's SageMaker Pipeline: one definition, built offline, run by SageMaker or locally.

- `pipeline.definition`: `build_pipeline(settings)` and `definition_json(settings)`.
- `pipeline.packaging`: reproducible code archives and `stage_files(settings)`.
- `pipeline.settings`: `Settings`, everything the definition depends on besides the code.
- `pipeline.cli`: `python -m pipeline definition|start|status` (+ the local runner's commands).
"""
