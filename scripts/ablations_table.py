"""Markdown table of an ablations run (scripts/ablations.sh RUN): one row per variant with LPIPS-alex, PSNR-Y and
SSIM-Y on BSD100 (Real-ESRGAN-degraded seed 0, and its given bicubic LR), the steps and wall time of each of the
variant's stages, beside the paper's Tables 2 and 3 (DIV2K-val, Real-ESRGAN degradations, LPIPS).

    python scripts/ablations_table.py RUN > table.md
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

# (variant, what it is, paper table, paper LPIPS, stages of its chain in RUN)
ROWS = [
    ("a", "bidirectional, with variance (the method)", "2, 3", 0.249, ["a_teacher_x2", "a_student_x4", "a_decoder"]),
    ("a1", "as a, seed 1", "", None, ["a1_teacher_x2", "a1_student_x4", "a1_decoder"]),
    ("b", "bidirectional, mean only (eq. 7, sigma = 1)", "2", 0.313, ["b_teacher_x2", "b_student_x4", "b_decoder"]),
    ("c", "unidirectional (LR latent concatenated, N(0, I) start)", "2", 0.468,
     ["c_teacher_x2", "c_student_x4", "c_decoder"]),
    ("d", "independent encoder (trained alone on the HR latent, then frozen)", "3", 0.549,
     ["d_encoder", "d_teacher_x2", "d_student_x4", "d_decoder"]),
    ("e", "independent decoder (stage-0 decoder, not finetuned on the UNet's output)", "3", 0.401,
     ["a_teacher_x2", "a_student_x4"]),
]


def _wall(run: Path) -> dict[str, tuple[int, int]]:
    out: dict[str, tuple[int, int]] = {}
    f = run / "wall_seconds.txt"
    if f.is_file():
        for line in f.read_text().splitlines():
            name, steps, secs = line.split()
            prev = out.get(name, (0, 0))
            out[name] = (int(steps), prev[1] + int(secs))  # a resumed stage adds its pieces
    return out


def _metrics(run: Path, variant: str, kind: str) -> dict | None:
    f = run / "eval" / f"{variant}.{kind}.json"
    return json.loads(f.read_text())["summary"] if f.is_file() else None


def table(run: Path) -> str:
    wall = _wall(run)
    head = ("| variant | | paper table | paper LPIPS | LPIPS-alex (degraded) | PSNR-Y | SSIM-Y "
            "| LPIPS-alex (clean) | PSNR-Y | SSIM-Y | stages: steps, minutes |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    bic = {}
    for v, what, tab, paper, stages in ROWS:
        deg, clean = _metrics(run, v, "realesrgan"), _metrics(run, v, "clean")
        if deg is None and clean is None:
            continue
        cells = [v, what, tab, "" if paper is None else f"{paper:.3f}"]
        for m in (deg, clean):
            if m is None:
                cells += ["-", "-", "-"]
                continue
            e = m["edgesr"]
            cells += [f"{e['lpips']:.4f}", f"{e['psnr_y']:.2f}", f"{e['ssim_y']:.4f}"]
        for kind, m in (("realesrgan", deg), ("clean", clean)):
            if m is not None:
                bic[kind] = m["bicubic"]
        cells.append(", ".join(f"{s} {wall[s][0]} / {wall[s][1] / 60:.1f}" for s in stages if s in wall))
        lines.append("| " + " | ".join(cells) + " |")
    if bic:
        cells = ["bicubic", "PIL bicubic of the same LR", "", ""]
        for kind in ("realesrgan", "clean"):
            b = bic.get(kind)
            cells += ["-"] * 3 if b is None else [f"{b['lpips']:.4f}", f"{b['psnr_y']:.2f}", f"{b['ssim_y']:.4f}"]
        lines.append("| " + " | ".join(cells + [""]) + " |")
    if "autoencoder" in wall:
        lines.append("")
        lines.append(f"Shared stage-0 autoencoder: {wall['autoencoder'][0]} steps, "
                     f"{wall['autoencoder'][1] / 60:.1f} min.")
    lines += paired(run)
    return "\n".join(lines) + "\n"


def _per_image(run: Path, variant: str, kind: str) -> dict[str, float] | None:
    f = run / "eval" / f"{variant}.{kind}.json"
    if not f.is_file():
        return None
    rows = json.loads(f.read_text()).get("per_image") or []
    return {r["image"]: r["methods"]["edgesr"]["lpips"] for r in rows} or None


def paired(run: Path) -> list[str]:
    """Per image, LPIPS of each variant minus (a)'s on the same image: the mean, its standard error, and the
    share of images where (a) is better. a1 (a's seed twin) gives the run-to-run spread to read them against."""
    import statistics

    out = []
    for kind, label in (("realesrgan", "degraded"), ("clean", "clean")):
        base = _per_image(run, "a", kind)
        if base is None:
            continue
        rows = []
        for v, *_ in ROWS:
            other = _per_image(run, v, kind) if v != "a" else None
            if not other:
                continue
            d = [other[k] - base[k] for k in base if k in other]
            if len(d) < 2:
                continue
            se = statistics.stdev(d) / len(d) ** 0.5
            better = sum(x > 0 for x in d) / len(d)
            rows.append(f"| {v} | {statistics.fmean(d):+.4f} | {se:.4f} | {better:.0%} | {len(d)} |")
        if rows:
            out += ["", f"Paired, BSD100 {label}: LPIPS(variant) - LPIPS(a), per image",
                    "", "| variant | mean difference | standard error | images where a is better | images |",
                    "|---|---|---|---|---|", *rows]
    return out


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python scripts/ablations_table.py RUN")
    sys.stdout.write(table(Path(sys.argv[1])))
