"""pyarrow in rule scripts, without the start-up costs they do not need."""

import sys


class _HidePandas:
    """A meta-path finder that makes `import pandas` fail while it is installed."""

    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] == "pandas":
            raise ModuleNotFoundError("pandas is hidden from pyarrow's probe", name=name)


def skip_pandas_probe() -> None:
    """Tell pyarrow, once per process, that there is no pandas.

    pyarrow's first conversion of Python or NumPy data imports pandas (0.2 CPU-s and 45 MB per
    process, a tenth of a partition job) only to check whether it was handed a pandas object.
    Rule scripts that never hand it one call this first; pandas itself stays importable."""
    if "pandas" in sys.modules:
        return
    import pyarrow as pa

    finder = _HidePandas()
    sys.meta_path.insert(0, finder)
    try:
        pa.array([0])  # the probe: it fails to import pandas and remembers that
    finally:
        sys.meta_path.remove(finder)


def read_parquet(path, columns: list[str] | None = None):
    """`pq.read_table` without pyarrow.dataset, whose import costs every job CPU time (more in a
    process that has not called skip_pandas_probe, as it brings pandas along; docs/cleaning.md)."""
    import pyarrow.parquet as pq

    return pq.ParquetFile(path).read(columns=columns)
