"""Presentation of results: one number formatter, tables (console, Markdown), figures (PNG), the
comparison's HTML page, the interactive 3D viewer page and the mesh files (.obj/.ply/.glb). The only
layer that writes figures, meshes and pages; everything here reads records; nothing here computes a
metric."""

from recon.report.eval_figures import write_eval_figures
from recon.report.figures import (FIG_VIEWS, figure_predictions, plot_curves, prediction_mesh_name, render_mesh_rgb,
                                  save_prediction_meshes)
from recon.report.format import finite, fmt
from recon.report.html import html_report
from recon.report.tables import (colour_table, comparison_rows, comparison_table, markdown_table,
                                 reference_label, results_table)
from recon.report.viewer import (ViewerItem, viewer_fragment, viewer_items, viewer_items_from_meshes, viewer_page,
                                 write_viewer_page)

__all__ = ["FIG_VIEWS", "figure_predictions", "plot_curves", "prediction_mesh_name", "render_mesh_rgb",
           "save_prediction_meshes", "finite", "fmt", "html_report", "colour_table", "comparison_rows",
           "comparison_table", "markdown_table", "reference_label", "results_table", "ViewerItem", "viewer_fragment",
           "viewer_items", "viewer_items_from_meshes", "viewer_page", "write_viewer_page", "write_eval_figures"]
