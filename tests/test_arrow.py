"""skip_pandas_probe: pyarrow stops importing pandas in rule scripts, and pandas still works."""

import subprocess
import sys

SCRIPT = """
import sys
from codeparrot.arrow import skip_pandas_probe
skip_pandas_probe()
import numpy as np, pyarrow as pa
pa.array(["a", None]); pa.array(np.arange(3)).to_numpy(); pa.table({"x": [1, 2]}).take(np.array([1]))
assert "pandas" not in sys.modules, "pyarrow imported pandas"
import pandas as pd
assert pa.array(pd.Series([1, 2])).to_pylist() == [1, 2]
print("ok")
"""


def test_pyarrow_converts_without_importing_pandas():
    out = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"
