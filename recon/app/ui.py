"""The Gradio page of ``python -m pipelines.app`` (the only module that imports Gradio).

Offline by construction: analytics and Gradio's version check off (``analytics_enabled=False``, and
``GRADIO_ANALYTICS_ENABLED=False`` set before Gradio is imported), no share link, no server-side
rendering (no Node process), a theme of system fonts (no font download), and Gradio's own
front-end files served by the app itself; the browser test checks that no request leaves 127.0.0.1.

Requests are queued: every event that runs the model shares one concurrency slot
(``concurrency_id="model"``, limit 1), so they run one at a time in arrival order and at most
``QUEUE_SIZE`` more wait (later ones are told the queue is full); ``AppService.lock`` also serialises
direct calls. Memory thus holds one model and one request's tensors.
"""

from __future__ import annotations

import os

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

from pathlib import Path  # noqa: E402
from typing import Any, Sequence  # noqa: E402

import gradio as gr  # noqa: E402

from recon.app.browse import ALL, COLUMNS, EvalBrowser  # noqa: E402
from recon.app.service import AppService  # noqa: E402
from recon.data.image_io import ImageError  # noqa: E402

__all__ = ["QUEUE_SIZE", "MAX_UPLOAD", "picture_input", "theme", "build_app", "launch"]

QUEUE_SIZE = 64       # requests waiting for the model beyond the one running
MAX_UPLOAD = "50mb"   # larger uploads are refused by the server before reaching the model
CSS = "footer {display: none !important}"


def picture_input(**kwargs: Any) -> gr.Image:
    """``gr.Image`` (drop, paste, pick; shown as a picture) that hands the uploaded file's path to the
    app without opening it: Gradio's own preprocessing opens it with Pillow, so a text file named .png
    or a 20000 x 20000 PNG would fail there with Gradio's message instead of the app's. (An instance
    override, not a subclass: Gradio writes a .pyi stub next to the module of every Component subclass.)"""
    image = gr.Image(type="filepath", **kwargs)
    gradio_preprocess = image.preprocess

    def preprocess(payload: Any) -> str | None:
        if payload is None:
            return None
        if payload.url and payload.url.startswith("data:"):  # a base64 paste: Gradio decodes it to a file
            return gradio_preprocess(payload)
        return str(payload.path)

    image.preprocess = preprocess  # type: ignore[method-assign]
    return image


def theme() -> gr.themes.Base:
    """Gradio's default look with system fonts (the default theme names web fonts)."""
    return gr.themes.Default(font=["system-ui", "-apple-system", "Segoe UI", "Roboto", "sans-serif"],
                             font_mono=["ui-monospace", "SFMono-Regular", "Menlo", "monospace"])


def _try_tab(service: AppService, examples: Sequence[Path]) -> None:
    gr.Markdown("Drop, paste or pick a picture of one object (a cut-out with transparency, or an object on a "
                "plain background). The model reconstructs its mesh; turn it with the mouse.")
    with gr.Row():
        with gr.Column(scale=1):
            picture = picture_input(label="Picture", sources=["upload", "clipboard"], image_mode=None,
                                    elem_id="picture", height=320)
            if examples:
                gr.Examples([[str(p)] for p in examples], inputs=[picture], label="Examples (test images)",
                            examples_per_page=8)
        with gr.Column(scale=2):
            mesh = gr.Model3D(label="Predicted mesh", elem_id="mesh", height=420, clear_color=(1, 1, 1, 1))
            with gr.Row():
                glb = gr.DownloadButton("Download .glb", elem_id="download-glb", size="sm")
                obj = gr.DownloadButton("Download .obj", elem_id="download-obj", size="sm")
                ply = gr.DownloadButton("Download .ply", elem_id="download-ply", size="sm")
    status = gr.Markdown(elem_id="status")
    figure = gr.Image(label="Model input | silhouette of the mesh at the best-matching training view | overlay "
                            "(grey: both, red: input only, blue: mesh only)", type="filepath", interactive=False,
                      elem_id="silhouette", height=220)

    def run(path: str | None) -> tuple[Any, ...]:
        if not path:
            return None, None, None, None, None, ""
        try:
            a = service.try_image(path)
        except ImageError as e:
            name = Path(path).name
            return None, None, None, None, None, f"**Cannot use {name}:** {e}"
        files = (str(a.glb), str(a.obj), str(a.ply))
        return str(a.glb), str(a.figure), *files, a.summary

    picture.change(run, inputs=picture, outputs=[mesh, figure, glb, obj, ply, status], api_name="predict",
                   concurrency_id="model", concurrency_limit=1)


def _browse_tab(browser: EvalBrowser | None, note: str) -> None:
    if browser is None:
        gr.Markdown(note, elem_id="browse-status")
        return
    gr.Markdown(browser.title)
    with gr.Row():
        category = gr.Dropdown([ALL, *browser.categories], value=ALL, label="Category", elem_id="category")
        worst = gr.Checkbox(True, label="Worst first (lowest IoU at the top)", elem_id="worst-first")
    table = gr.Dataframe(browser.table(), headers=COLUMNS, datatype=["number", "str", "str", "number", "number"],
                         interactive=False, elem_id="eval-table", max_height=360, label="Scored predictions "
                         "(click a row; click a column head to sort)")
    row_note = gr.Markdown(elem_id="row-note")
    with gr.Row():
        image = gr.Image(label="Input", type="filepath", interactive=False, height=300, elem_id="row-input")
        pred = gr.Model3D(label="Prediction", height=300, elem_id="row-prediction", clear_color=(1, 1, 1, 1))
        truth = gr.Model3D(label="Ground truth", height=300, elem_id="row-truth", clear_color=(1, 1, 1, 1))

    def refilter(cat: str, worst_first: bool) -> list[list[Any]]:
        return browser.table(cat, worst_first)

    def show(evt: gr.SelectData) -> tuple[Any, ...]:
        values = evt.row_value
        if not values or len(values) < 4:
            return None, None, None, ""
        try:
            row = browser.find(str(values[1]), str(values[2]), int(values[3]))
        except (KeyError, ValueError):
            return None, None, None, f"no row {values!r} in {browser.path}"
        files = browser.files(row)
        head = f"**{row.category} {row.object_id}, view {row.view}: IoU {row.iou:.4f}.** "
        return (None if files.image is None else str(files.image),
                None if files.prediction is None else str(files.prediction),
                None if files.ground_truth is None else str(files.ground_truth), head + files.note)

    category.change(refilter, [category, worst], table, api_name="table")
    worst.change(refilter, [category, worst], table, api_name=False)
    table.select(show, None, [image, pred, truth, row_note], api_name="row", concurrency_id="model",
                 concurrency_limit=1)


def build_app(service: AppService, examples: Sequence[Path] = (), browser: EvalBrowser | None = None,
              browse_note: str = "") -> gr.Blocks:
    """The page: a "Try it" tab and a "Browse an evaluation" tab (``browse_note`` says why it is empty
    when ``browser`` is None)."""
    with gr.Blocks(title="recon: single image to 3D", analytics_enabled=False,
                   delete_cache=(3600, 3600)) as demo:
        gr.Markdown(f"## recon: single image to 3D\n{service.predictor.description}")
        with gr.Tabs():
            with gr.Tab("Try it", id="try"):
                _try_tab(service, examples)
            with gr.Tab("Browse an evaluation", id="browse"):
                _browse_tab(browser, browse_note)
    demo.queue(default_concurrency_limit=1, max_size=QUEUE_SIZE)
    return demo


def launch(demo: gr.Blocks, host: str, port: int, allowed: Sequence[str | os.PathLike] = ()) -> str:
    """Start the server in a background thread; returns its URL (``demo.block_thread()`` waits)."""
    _, url, _ = demo.launch(server_name=host, server_port=port, share=False, ssr_mode=False, show_error=True,
                            quiet=True, prevent_thread_lock=True, max_file_size=MAX_UPLOAD, footer_links=[],
                            allowed_paths=[str(p) for p in allowed], theme=theme(), css=CSS, pwa=False,
                            mcp_server=False, enable_monitoring=False)
    return url
