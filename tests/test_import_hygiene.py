"""The core is pure torch: importing it must not pull in widget or plotting libraries."""

import subprocess
import sys


def test_core_imports_no_widget_or_plotting_module():
    code = (
        "import sys, nbexplain, nbexplain.core.optimize, nbexplain.circuits;"
        "bad = sorted({m.split('.')[0] for m in sys.modules} & {'ipywidgets', 'anywidget', 'matplotlib', 'captum', 'IPython'});"
        "print(','.join(bad))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", f"importing the core pulled in: {out.stdout.strip()}"
