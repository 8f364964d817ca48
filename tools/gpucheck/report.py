"""The report: ``gpu_check.json`` and ``gpu_check.md`` (what docs/performance.md's GPU tables are copied from)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from recon.io import atomic_write_bytes, write_json

__all__ = ["REPORT_JSON", "REPORT_MD", "write_report", "markdown_report"]

REPORT_JSON = "gpu_check.json"
REPORT_MD = "gpu_check.md"


def write_report(report: dict[str, Any], out: Path) -> None:
    """``gpu_check.json`` and ``gpu_check.md`` in ``out``, each written atomically."""
    write_json(report, out / REPORT_JSON)
    atomic_write_bytes(out / REPORT_MD, markdown_report(report).encode())


def _f(x: Any, digits: int = 2) -> str:
    if x is None:
        return "–"
    if isinstance(x, float):
        return f"{x:.{digits}g}" if abs(x) < 1e-2 and x != 0 else f"{x:.{digits}f}"
    return str(x)


def markdown_report(report: dict[str, Any]) -> str:
    """The report as Markdown (what docs/performance.md's GPU tables are copied from)."""
    s = report["sections"]
    lines = [f"# GPU check ({'DRY RUN, CPU only' if report['dry_run'] else 'CUDA'})", "",
             f"Started {report['started']}, {report.get('elapsed_s', 0)} s; overall: "
             f"**{'PASSED' if report['ok'] else 'FAILED'}**", ""]
    if report.get("note"):
        lines += [f"> {report['note']}", ""]
    lines += ["| section | status | seconds | note |", "|---|---|---:|---|"]
    for name, rec in s.items():
        note = (rec.get("reason") or "").splitlines()[0][:160] if rec.get("reason") else ""
        lines.append(f"| {name} | {rec['status']} | {rec.get('seconds', '')} | {note} |")
    env = s.get("environment", {})
    if env.get("status") == "passed":
        lines += ["", "## Environment", ""]
        for k in ("device", "capability", "memory_gib", "driver", "torch", "torch_cuda", "cudnn", "nvcc", "python",
                  "cpus", "git_commit"):
            if k in env:
                lines.append(f"- {k}: {env[k]}")
        lines.append(f"- packages: {env.get('packages')}")
    for k in s.get("build", {}).get("kernels", []):
        lines += ["", f"Kernel build ({k['kind']}, CPU SIMD {k['cpu_simd']}): {k['seconds']} s (JIT build, or a "
                      f"load from the cache)."]
    p = s.get("parity", {})
    if p.get("rows"):
        tol = p["tolerances"]
        lines += ["", "## Parity", "", f"Tolerances: max |forward difference| {tol['fwd_max_abs']}, relative L2 "
                  f"gradient difference {tol['grad_rel_l2']}.", "",
                  "| case | dtype | check | max abs fwd | rel grad | ok |", "|---|---|---|---:|---:|---|"]
        for r in p["rows"]:
            lines.append(f"| {r['case']} | {r['dtype']} | {r['check']} | {_f(r.get('fwd_max_abs'))} | "
                         f"{_f(r.get('grad_rel_l2'))} | {'yes' if r['passed'] else '**NO**'} |")
    t = s.get("cuda_tests", {})
    if t.get("status") in ("passed", "failed"):
        lines += ["", "## CUDA tests", "", f"`{t.get('command', '')}`: " + (
            f"{t.get('collected')} collected (dry run)" if "collected" in t else
            f"{t.get('tests')} tests, {t.get('failures')} failures, {t.get('errors')} errors, "
            f"{t.get('skipped')} skipped")]
        for name in t.get("failed_tests", []):
            lines.append(f"- FAILED {name}")
    bn = s.get("bench", {})
    if bn.get("rows"):
        lines += ["", "## Bench (median ms)", "",
                  "| impl | device | size | batch | faces | fwd | fwd+bwd | fwd+bwd / image |",
                  "|---|---|---:|---:|---:|---:|---:|---:|"]
        for r in bn["rows"]:
            lines.append(f"| {r['impl']} | {r['device']} | {r['size']} | {r['batch']} | {r['faces']} | "
                         f"{r['fwd_ms']:.2f} | {r['fwdbwd_ms']:.2f} | {r['per_image_fwdbwd_ms']:.3f} |")
        if bn.get("ratios"):
            lines += ["", "| speedup (fwd+bwd) | x |", "|---|---:|"]
            lines += [f"| {k} | {v:.1f} |" for k, v in bn["ratios"].items()]
        if bn.get("train_step"):
            ts = bn["train_step"]
            lines += ["", f"Training step (impl {ts.get('impl')}): " + ", ".join(
                f"{k} {ts[k]:.1f} ms" for k in ("network", "render", "loss", "optimizer", "total")) +
                f", render share {100 * ts['render_fraction']:.1f}%."]
        if bn.get("agreement"):
            lines += ["", "## Backends vs softras (same meshes, 64 px, sigma 1e-4)", "",
                      "| backend | mean abs diff vs softras | IoU (>0.5) vs softras | mean silhouette (softras) |",
                      "|---|---:|---:|---:|"]
            for r in bn["agreement"]:
                if r["available"]:
                    lines.append(f"| {r['backend']} | {r['mean_abs_diff']:.4f} | {r['iou_vs_softras']:.4f} | "
                                 f"{r['mean_silhouette']:.4f} ({r['mean_silhouette_softras']:.4f}) |")
                else:
                    lines.append(f"| {r['backend']} | not available: {r['reason'][:120]} | | |")
        for item in bn.get("skipped", []):
            lines.append(f"- skipped: {item}")
    tr = s.get("train", {})
    if tr.get("status") in ("passed", "failed"):
        lines += ["", "## Training and evaluation", "",
                  f"{tr['steps']} steps x batch {tr['batch_size']} on {tr['device']} (softras impl {tr['impl']}) in "
                  f"{tr['train_seconds']} s ({tr['steps_per_second']} steps/s); loss {_f(tr['first_loss'], 4)} -> "
                  f"{_f(tr['last_loss'], 4)}; test mean IoU {_f(tr['test_mean_iou'], 4)} (template "
                  f"{_f(tr['template_iou'], 4)}, mean shape {_f(tr['mean_shape_iou'], 4)}); "
                  f"eval {tr['eval_seconds']} s."]
    return "\n".join(lines) + "\n"
