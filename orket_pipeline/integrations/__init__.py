"""Integrations with the tools users already run: each is optional and costs nothing unused.

```
pytest_plugin.py   the `orket` fixture and `--orket-report` (entry point `pytest11`)
```
"""
