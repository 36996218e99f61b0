"""The README's Python example runs as written."""
import os
import re


def test_readme_example_runs(capsys, tmp_path, monkeypatch):
    text = open(os.path.join(os.path.dirname(__file__), "..", "README.md")).read()
    monkeypatch.chdir(tmp_path)  # the example saves a model file
    blocks = re.findall(r"```python\n(.*?)```", text, re.S)
    assert blocks, "README has no python example"
    for code in blocks:
        exec(compile(code, "README.md", "exec"), {})
    assert "SIMD tier" in capsys.readouterr().out
