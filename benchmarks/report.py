"""Benchmark results JSON -> a markdown table and a plot.

    python benchmarks/report.py benchmarks/results/h200.json [more.json ...]

writes `benchmarks/results/h200.md` and `benchmarks/results/h200.png` (named after the first file). Several files are
merged as `run.py --out` merges runs: a later record of the same (model, impl, world, mode) replaces an earlier one.
Needs only the standard library and matplotlib (not torch), so it runs anywhere.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

IMPLS = ("stock", "usp", "usp-ring2", "diffusers", "diffusers-ring2")
MODES = (
    "eager",
    "graph",
    "compiled",
    "compiled_graph",
)  # the order run.py measures them in: compiling changes the model


def _key(r: dict) -> tuple:
    return r["model"], r["impl"], r["world"], r["mode"]


def _order(r: dict) -> tuple:
    impl = IMPLS.index(r["impl"]) if r["impl"] in IMPLS else len(IMPLS)
    mode = MODES.index(r["mode"]) if r["mode"] in MODES else len(MODES)
    return r["model"], impl, r["world"], mode


def merge(old: dict, new: dict) -> dict:
    """`new` over `old`: records with the same (model, impl, world, mode) are replaced, all others kept. An error
    entry is dropped where a record of the same key exists (a good older record outlives a newer failure)."""
    records = {_key(r): r for r in old.get("records", []) + new.get("records", [])}
    errors = {_key(e): e for e in old.get("errors", []) + new.get("errors", []) if _key(e) not in records}
    merged = {**old, **{k: v for k, v in new.items() if k not in ("records", "errors")}}
    merged["records"] = sorted(records.values(), key=_order)
    merged["errors"] = sorted(errors.values(), key=_order)
    seen: dict[str, dict[str, set]] = {}
    for r in merged["records"]:
        coll = r.get("collectives_per_forward") or {}
        for kind in ("self", "cross"):
            per = coll.get(f"per_{kind}_attention")
            if r["world"] > 1 and per is not None:
                seen.setdefault(r["impl"], {}).setdefault(f"{kind}_attention", set()).add(per["all_to_all"])
    # All-to-alls per attention at world > 1: one number where every record agrees (the expected case), else all seen.
    merged["collectives_by_impl"] = {
        impl: {k: min(v) if len(v) == 1 else sorted(v) for k, v in kinds.items()} for impl, kinds in seen.items()
    }
    merged["collectives"] = merged["collectives_by_impl"].get("usp", {})
    return merged


def merge_file(path: Path, new: dict) -> None:
    """Merge `new` into the results file at `path` (created if missing)."""
    old = json.loads(path.read_text()) if path.exists() else {}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(merge(old, new), indent=1) + "\n")


def _per_attention(r: dict, kind: str) -> str:
    per = (r.get("collectives_per_forward") or {}).get(f"per_{kind}_attention")
    if per is None:
        return "-"
    other = per.get("other", 0)  # a ring's shift: its batched sends and receives, one coalesced NCCL call
    return f"{per['all_to_all']:g}" + (f" + {other:g} other" if other else "")


def _num(x: float | None, fmt: str, suffix: str = "") -> str:
    return "-" if x is None else format(x, fmt) + suffix


def _row(*cells: object) -> str:
    return "| " + " | ".join(map(str, cells)) + " |"


def short_table(records: list[dict]) -> str:
    """What run.py prints at the end of a run."""
    lines = [_row("model", "impl", "world", "mode", "step ms (median)", "peak GB", "a2a/self-attn", "a2a/cross-attn"),
             _row(*["---"] * 8)]  # fmt: skip
    for r in records:
        cells = f"{r['step_ms_median']:.2f}", _num(r["peak_mem_gb"], ".1f"), _per_attention(r, "self")
        lines.append(_row(r["model"], r["impl"], r["world"], r["mode"], *cells, _per_attention(r, "cross")))
    return "\n".join(lines)


def stock_ms(records: list[dict]) -> dict[tuple[str, str], float]:
    """(model, mode) -> stock step time at world 1: the baseline of every ratio."""
    return {(r["model"], r["mode"]): r["step_ms_median"] for r in records if r["impl"] == "stock" and r["world"] == 1}


def markdown(data: dict) -> str:
    records, base = data["records"], stock_ms(data["records"])
    machines = sorted({r.get("machine", data.get("machine", "?")) for r in records})
    last = max(r.get("date", "") for r in records) or data.get("date")
    out = [f"# Benchmark: {', '.join(machines)}", "",
           f"torch {data.get('torch')}, diffusers {data.get('diffusers')}, CUDA {data.get('cuda')}, "
           f"NCCL {data.get('nccl')}; last run {last}. One transformer forward per step, random weights; "
           "median over the timed steps of the slowest rank. `/ stock` and speed-up compare with stock at world 1 in "
           "the same mode (ideal speed-up: the world size). Peak GB: max_memory_allocated (1e9 bytes), busiest rank. "
           "a2a: all-to-alls per attention call, from profiler events (+ other: any other collective per call, such "
           "as a ring's batched sends and receives).", "",
           _row("model", "impl", "world", "mode", "step ms", "/ stock", "speed-up", "peak GB", "a2a/self-attn",
                "a2a/cross-attn", "compile s"), _row(*["---"] * 11)]  # fmt: skip
    for r in records:
        ref = base.get((r["model"], r["mode"]))
        ratio = r["step_ms_median"] / ref if ref else None
        speed = _num(ratio, ".3f"), _num(ratio and 1 / ratio, ".2f", "x"), _num(r.get("peak_mem_gb"), ".1f")
        out.append(
            _row(
                r["model"],
                r["impl"],
                r["world"],
                r["mode"],
                f"{r['step_ms_median']:.2f}",
                *speed,
                _per_attention(r, "self"),
                _per_attention(r, "cross"),
                _num(r.get("compile_s"), ".1f"),
            )
        )
    if data.get("packing"):
        pk, ops = data["packing"], ("pack_qkv", "pack_out", "unpack_heads")
        out += ["", f"## Packing copies ({pk['shape']}: Flux 1024² local tensors)", "",
                f"Reference device-to-device copy: {pk['copy']['gb_per_s']} GB/s. Bandwidth = bytes read + written / "
                "time, as a share of that copy's; on CUDA the time of a CUDA-graph replay (kernels only), with the "
                "plain eager calls' time (host overhead included) in parentheses. `plain`: the same op with "
                "PyTorch's `Tensor.copy_` in place of `diffusers_usp.comm.copy_`.", "",
                _row("P", "local tokens", "op", "µs", "of copy", "plain µs", "plain of copy"),
                _row(*["---"] * 7)]  # fmt: skip
        for row in pk["rows"]:
            for name in (name for name in ops if name in row):
                op, plain = row[name], row[name].get("plain")
                cells = [f"{op['us']} ({op['us_eager']})", f"{op['fraction_of_copy']:.0%}",
                         f"{plain['us']} ({plain['us_eager']})" if plain else "-",
                         f"{plain['fraction_of_copy']:.0%}" if plain else "-"]  # fmt: skip
                out.append(_row(row["world"], row["local_tokens"], f"`{name}`", *cells))
    if data.get("errors"):
        out += ["", "## Failed", ""]
        out += [f"- {e['model']} {e['impl']} world={e['world']} {e['mode']}: `{e['error'].splitlines()[0][:300]}`"
                for e in data["errors"]]  # fmt: skip
    return "\n".join(out) + "\n"


def plot(data: dict, path: Path) -> None:
    """Speed-up over stock at world 1 against world size, one panel per model; with world-1 data only, a grouped
    bar chart of the usp / stock step-time ratio per model and mode (USP's overhead on one GPU)."""
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    records, base = data["records"], stock_ms(data["records"])
    models = sorted({r["model"] for r in records}, key=lambda m: [r["model"] for r in records].index(m))
    if any(r["world"] > 1 for r in records):
        fig, axes = plt.subplots(1, len(models), figsize=(4.5 * len(models), 4), squeeze=False)
        for ax, model in zip(axes[0], models):
            worlds = sorted({r["world"] for r in records if r["model"] == model})
            # Speed-up where this model has a stock baseline; otherwise (a multi-GPU file alone) plain step times.
            speedup = any(key[0] == model for key in base)
            if speedup:
                ax.plot(worlds, worlds, "k:", label="ideal")
            for impl, mode in ((i, m) for i in IMPLS for m in MODES if i != "stock" or not speedup):
                pts = [(r["world"], base[(model, mode)] / r["step_ms_median"] if speedup else r["step_ms_median"])
                       for r in records if r["model"] == model and r["impl"] == impl and r["mode"] == mode
                       and (not speedup or (model, mode) in base)]  # fmt: skip
                if pts:
                    ax.plot(*zip(*sorted(pts)), marker="o", label=f"{impl} {mode}")
            ylabel, yscale = ("speed-up vs stock, 1 GPU, same mode", "linear") if speedup else ("step ms", "log")
            ax.set(title=model, xlabel="GPUs (world size)", ylabel=ylabel, xscale="log", yscale=yscale)
            ax.set_xticks(worlds, [str(w) for w in worlds])
            ax.legend(fontsize=7)
    else:
        modes = [m for m in MODES if any(r["mode"] == m for r in records)]
        fig, ax = plt.subplots(figsize=(1.8 + 1.6 * len(models), 4))
        width = 0.8 / max(1, len(modes))
        for i, mode in enumerate(modes):
            ratios = [next((r["step_ms_median"] / base[(m, mode)] for r in records if (m, mode) in base and
                            r["model"] == m and r["mode"] == mode and r["impl"] == "usp" and r["world"] == 1), 0)
                      for m in models]  # fmt: skip
            ax.bar([j + i * width for j in range(len(models))], ratios, width, label=mode)
        ax.axhline(1.0, color="k", lw=0.8)
        ax.set_xticks([j + width * (len(modes) - 1) / 2 for j in range(len(models))], models, fontsize=8)
        ax.set(ylabel="usp / stock step time (1 GPU)", title="USP overhead at world 1 (1.0 = none)")
        ax.legend()
    fig.suptitle(", ".join(sorted({r.get("machine", "?") for r in records})), fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description="Write <stem>.md and <stem>.png from benchmark results JSON files.")
    p.add_argument("results", nargs="+", type=Path)
    p.add_argument("--out-dir", type=Path, default=Path(__file__).resolve().parent / "results")
    args = p.parse_args(argv)
    data: dict = {}
    for path in args.results:
        data = merge(data, json.loads(path.read_text()))
    if not data["records"]:
        raise SystemExit(f"No records in {', '.join(map(str, args.results))}.")
    args.out_dir.mkdir(parents=True, exist_ok=True)
    stem = args.results[0].stem
    (args.out_dir / f"{stem}.md").write_text(markdown(data))
    print(f"wrote {args.out_dir / stem}.md")
    try:
        plot(data, args.out_dir / f"{stem}.png")
        print(f"wrote {args.out_dir / stem}.png")
    except ImportError:  # the table alone is still worth having
        print("matplotlib is not installed: no plot (pip install matplotlib)")


if __name__ == "__main__":
    main()
