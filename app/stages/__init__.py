"""Qt-free glue between the store and the pipeline: one module per stage kind.

Each stage function is ``run(store, job, ctx) -> str | None`` (see app.runner).
"""
