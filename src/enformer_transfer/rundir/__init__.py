"""The run directory, below every stage: its layout (every folder and file name, ``layout``), its
settings (``config``, RUN_DIR/config.toml), each stage's record (``provenance``, stage.json), the
contract every stage follows (``stage.run_stage``), typed reading of what earlier stages wrote
(``run.RunDirectory``) and the chunked array store they write (``store``)."""
