"""Write the app's built-in example pictures (assets/app_examples/): one test object of six
categories of the embedded synthetic dataset, as `pipelines.convert synthetic` renders them.

    PYTHONPATH=. python scripts/app_examples.py
"""

from recon.app.examples import render_builtin_examples

if __name__ == "__main__":
    for path in render_builtin_examples():
        print(path)
