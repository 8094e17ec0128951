"""Release bookkeeping (staging, specs file, publishing, model cards): ``python -m convtwist_zoo.release``."""
