"""Pipeline stages: each module exposes ``run(section, ctx)``-style functions that
:func:`dynid.pipeline.run_pipeline` loads by name (see :data:`dynid.pipeline.STAGES`).

- :mod:`dynid.stages.data` - ``simulate``, ``train``, ``evaluate``.
"""
