"""bench/compare.sh's report: hyperfine's JSON of each figure -> a markdown table of medians and
each tool's time over rbuild's, bench/results/compare.{json,md,png}; with --quick, rbuild's
medians beside the committed ones. Standard library only (and gnuplot for the chart)."""
import json
import os
import subprocess
import sys

FIGURES = {
    "a-cold": "a: small Dockerfile, cold",
    "a-cached": "a: small Dockerfile, cached",
    "b-1gib-run": "b: RUN writes 1 GiB / 100k files",
    "c-first": "c: 100k-file context, first build",
    "c-noop": "c: 100k-file context, no-op rebuild",
    "c-one-changed": "c: 100k-file context, one file changed",
    "d-run": "d: run --rm true",
    "e-pull": "e: pull 500 MiB, 5 layers",
    "e-run": "e: run of the pulled image",
    "f-copy": "f: COPY 500 MB / 40k files, cold",
}


def load(json_dir):
    out = {}
    for figure in FIGURES:
        path = os.path.join(json_dir, figure + ".json")
        if os.path.exists(path):
            out[figure] = {r["command"]: r["median"] for r in json.load(open(path))["results"]}
    return out


def reference(rows):
    """rbuild's row of a figure (d has two: the --network none one is the reference)."""
    for name in rows:
        if name.startswith("rbuild"):
            return name
    return None


def fmt(seconds):
    return f"{seconds * 1000:.0f} ms" if seconds < 10 else f"{seconds:.1f} s"


def table(data):
    lines = ["| figure | tool | median | time / rbuild's |", "|---|---|---:|---:|"]
    for figure, rows in data.items():
        ref = rows[reference(rows)]
        for name, median in rows.items():
            lines.append(f"| {FIGURES[figure]} | {name} | {fmt(median)} | {median / ref:.2f}x |")
    return "\n".join(lines) + "\n"


def chart(data, png):
    dat = png + ".dat"
    with open(dat, "w") as f:
        for figure, rows in data.items():
            ref = rows[reference(rows)]
            for name, median in rows.items():
                if not name.startswith("rbuild"):
                    label = f"{figure} {name}".replace('"', "")
                    f.write(f'"{label}" {median / ref:.3f}\n')
    script = f"""
set terminal pngcairo size 1100,700 noenhanced font ",10"
set output "{png}"
set title "Time of each peer over rbuild's on the same workload (higher: rbuild is faster; 1 = same)"
set style fill solid 0.8
set boxwidth 0.7
set logscale y 2
set yrange [0.25:*]
set ytics (0.25, 0.5, 1, 2, 4, 8, 16, 32, 64, 128)
set grid ytics
set xtics rotate by -50 left
set bmargin 14
set arrow from graph 0, first 1 to graph 1, first 1 nohead lw 2 lc rgb "black"
plot "{dat}" using 0:2:xtic(1) with boxes lc rgb "#3572a5" notitle
"""
    subprocess.run(["gnuplot"], input=script, text=True, check=True)
    os.remove(dat)


def main():
    json_dir, results, quick = sys.argv[1], sys.argv[2], sys.argv[3] == "1"
    data = load(json_dir)
    committed_path = os.path.join(results, "compare.json")
    if quick:
        committed = json.load(open(committed_path)) if os.path.exists(committed_path) else {}
        print(f"{'figure':<44} {'now':>9} {'committed':>10} {'ratio':>7}")
        for figure, rows in data.items():
            for name, median in rows.items():
                old = committed.get(figure, {}).get(name)
                ratio = f"{median / old:.2f}x" if old else "-"
                oldf = fmt(old) if old else "-"
                print(f"{FIGURES[figure] + ' / ' + name:<44} {fmt(median):>9} {oldf:>10} {ratio:>7}")
        print("(ratio = now / committed; above 1.3 on this noisy machine is worth a look)")
        return
    os.makedirs(results, exist_ok=True)
    json.dump(data, open(committed_path, "w"), indent=1, sort_keys=True)
    md = table(data)
    open(os.path.join(results, "compare.md"), "w").write(md)
    chart(data, os.path.join(results, "compare.png"))
    print(md)


main()
