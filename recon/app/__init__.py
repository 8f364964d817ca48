"""The local web app of ``python -m pipelines.app``: try a trained model on any picture and browse
an evaluation worst-first.

Nothing in ``recon`` or the other pipelines imports this package: it is the only code that needs the
optional ``app`` extra (Gradio), and only ``recon.app.ui`` imports Gradio. ``service`` (a picture ->
mesh files and a silhouette check) and ``browse`` (an eval JSON -> a worst-first table and one row's
inputs and meshes) are plain Python, tested without a browser.
"""
