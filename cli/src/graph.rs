//! `rbuild debug graph`: the lowered build graph as text or Graphviz DOT.

use std::fmt::Write;

use frontend::{Base, BuildDefinition, CopyFrom, CopyOp, Op};

fn kind(op: &Op) -> &'static str {
    match op {
        Op::Run(_) => "exec",
        Op::Copy(_) | Op::Add(_) | Op::Workdir(_) => "file",
        Op::Config(_) => "config",
    }
}

pub fn text(def: &BuildDefinition) -> String {
    let need = def.needed_stages();
    let mut out = String::new();
    for (i, stage) in def.stages.iter().enumerate() {
        let role = if i == def.target {
            "target"
        } else if need[i] {
            "needed"
        } else {
            "skipped"
        };
        let base = match &stage.base {
            Base::Scratch => "scratch".to_string(),
            Base::Image(r) => format!("image {r}"),
            Base::Stage(j) => format!("stage {j} ({})", def.stages[*j].display_name()),
        };
        let _ =
            writeln!(out, "stage {i} {} [{role}] from {base}  ({})", stage.display_name(), stage.location);
        for (n, step) in stage.steps.iter().enumerate() {
            let mut from: String = step.stage_sources().iter().map(|j| format!("  <- stage {j}")).collect();
            if let Op::Copy(CopyOp { from: Some(CopyFrom::Image(r)), .. }) = &step.op {
                from.push_str(&format!("  <- image {r}"));
            }
            let _ = writeln!(
                out,
                "  {:>3} {:<6} {}{from}  ({})",
                n + 1,
                kind(&step.op),
                step.text,
                step.location
            );
        }
    }
    out
}

fn quote(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n"))
}

pub fn dot(def: &BuildDefinition) -> String {
    let need = def.needed_stages();
    let mut out = String::from("digraph build {\n  rankdir=TB;\n  node [shape=box, fontname=monospace];\n");
    // The node that stands for a stage's result: its last step, or its FROM.
    let last = |i: usize| {
        let n = def.stages[i].steps.len();
        if n == 0 { format!("s{i}_from") } else { format!("s{i}_{}", n - 1) }
    };
    let mut edges = String::new();
    for (i, stage) in def.stages.iter().enumerate() {
        let style = if need[i] { "" } else { ", style=dashed, color=gray" };
        let _ = writeln!(
            out,
            "  subgraph cluster_s{i} {{\n    label={}{style};",
            quote(&format!("stage {i}: {}", stage.display_name()))
        );
        let _ = writeln!(out, "    s{i}_from [label={}];", quote(&stage.text));
        let mut prev = format!("s{i}_from");
        for (n, step) in stage.steps.iter().enumerate() {
            let _ = writeln!(out, "    s{i}_{n} [label={}];", quote(&step.text));
            let _ = writeln!(out, "    {prev} -> s{i}_{n};");
            prev = format!("s{i}_{n}");
            let how = if matches!(step.op, Op::Run(_)) { "RUN --mount from" } else { "COPY --from" };
            for j in step.stage_sources() {
                let _ = writeln!(edges, "  {} -> s{i}_{n} [style=dashed, label=\"{how}\"];", last(j));
            }
        }
        out.push_str("  }\n");
        if let Base::Stage(j) = stage.base {
            let _ = writeln!(edges, "  {} -> s{i}_from [label=\"FROM\"];", last(j));
        }
    }
    out.push_str(&edges);
    out.push_str("}\n");
    out
}
