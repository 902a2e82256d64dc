"""The spec language (torch-free): YAML with positions (`source`), extends/variants/overrides (`inherit`), the
strict pydantic base (`model`), the validated `Spec` (`spec`), width/depth/resolution scaling (`scaling`),
preprocessing and TTA declarations (`preprocess`), the JSON Schema (`schema`), and the block vocabulary
(`blocks/`). It imports the IR (`archspec.ir`) and nothing downstream of it."""
