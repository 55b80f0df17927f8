"""`vifi viz confusion` draws confusion.csv; without the viz extra every `vifi viz` command is one error line."""

import subprocess
import sys

import numpy as np
import pandas as pd


def test_confusion_png_from_an_evaluation_folder(tmp_path):
    folder = tmp_path / "ev"
    folder.mkdir()
    names = ["run", "walk", "jump"]
    pd.DataFrame([[3, 1, 0], [0, 2, 2], [0, 0, 4]], index=pd.Index(names, name="true\\predicted"),
                 columns=names).to_csv(folder / "confusion.csv")
    proc = subprocess.run([sys.executable, "-m", "vifi", "viz", "confusion", folder, "--out", tmp_path / "viz"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    png = tmp_path / "viz" / "confusion_ev.png"
    import matplotlib.image

    pixels = matplotlib.image.imread(png)
    colours = np.unique(pixels.reshape(-1, pixels.shape[2]), axis=0)
    assert pixels.ndim == 3 and pixels.shape[0] > 200 and len(colours) > 10  # a drawn picture, not a blank one
    assert proc.stdout == "" and f"wrote {png}" in proc.stderr


def test_viz_without_matplotlib_is_one_line_naming_the_extra(tmp_path):
    # A real process in which `import matplotlib` fails, as on an install without the [viz] extra.
    code = ("import sys; sys.modules['matplotlib'] = None; sys.argv = ['vifi', 'viz', 'curves', sys.argv[1]]; "
            "from vifi.cli.app import main; main()")
    proc = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "error: vifi viz needs matplotlib, which is not installed; pip install 'vifi[viz]'"]
