//! Parses and lowers a generated 10,000-line Dockerfile (`cargo bench -p frontend`), and times
//! the parse step alone.
//!
//! The Dockerfile mixes every instruction the frontend lowers, in the shapes real Dockerfiles
//! use: multi-stage `FROM ... AS`, ARGs with defaults, ENV with several quoted pairs, shell-form
//! RUN with line continuations, exec-form RUN, `COPY --from/--chown`, comments, blank lines...

use std::fmt::Write as _;
use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use frontend::{BaseConfig, ImageResolver, LowerOptions};

/// How many lines the generated Dockerfile has (at least; continuation lines count). Set
/// `FRONTEND_BENCH_LINES` to try other sizes (to see how the time scales).
const LINES: usize = 10_000;

struct Resolver;

impl ImageResolver for Resolver {
    fn resolve(&self, _reference: &str) -> Result<BaseConfig, frontend::ResolveError> {
        Ok(BaseConfig {
            env: vec![
                "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into(),
                "LANG=C.UTF-8".into(),
            ],
            working_dir: Some("/".into()),
            on_build: Vec::new(),
            platform: None,
        })
    }
}

fn options() -> LowerOptions {
    LowerOptions {
        build_args: vec![
            ("VERSION".into(), "1.4.2".into()),
            ("HTTP_PROXY".into(), "http://proxy:3128".into()),
        ],
        target: None,
        ..Default::default()
    }
}

/// Appends one stage's worth of instructions (about 250 lines) to `out`.
fn stage(out: &mut String, s: usize) {
    let w = |out: &mut String, text: std::fmt::Arguments| {
        out.write_fmt(text).unwrap();
        out.push('\n');
    };
    w(out, format_args!("# ---- stage {s} ----"));
    if s.is_multiple_of(4) {
        w(out, format_args!("FROM ${{REGISTRY}}/${{BASE}}:${{DEBIAN}} AS stage{s}"));
    } else {
        w(out, format_args!("FROM stage{} AS stage{s}", s - 1));
    }
    w(out, format_args!("ARG VERSION"));
    w(out, format_args!("ARG JOBS=4 TARGETDIR=/opt/app{s}"));
    w(out, format_args!("ENV APP_HOME=$TARGETDIR \\"));
    w(out, format_args!("    PATH=\"$TARGETDIR/bin:$PATH\" \\"));
    w(out, format_args!("    GREETING=\"hello world\" QUOTED='single ${{NOT_EXPANDED}}' EMPTY=\"\""));
    w(
        out,
        format_args!(
            "LABEL org.opencontainers.image.title=\"stage {s}\" org.opencontainers.image.version=\"${{VERSION}}\" \\"
        ),
    );
    w(out, format_args!("      org.opencontainers.image.vendor=rbuild"));
    w(out, format_args!("WORKDIR $APP_HOME"));
    w(out, format_args!(""));
    for k in 0..24 {
        match k % 8 {
            0 => {
                w(out, format_args!("# Install the packages step {k} needs."));
                w(out, format_args!("RUN set -eux; \\"));
                w(out, format_args!("    apt-get update; \\"));
                w(out, format_args!("    apt-get install -y --no-install-recommends \\"));
                w(out, format_args!("        ca-certificates curl git-{k} libssl-dev pkg-config; \\"));
                w(
                    out,
                    format_args!("    curl -fsSL \"https://example.com/v${{VERSION}}/tool-{k}.tar.gz\" \\"),
                );
                w(out, format_args!("        | tar -xz -C /usr/local/bin; \\"));
                w(out, format_args!("    rm -rf /var/lib/apt/lists/*"));
            }
            1 => {
                w(out, format_args!("RUN [\"/bin/sh\", \"-c\", \"echo step {k} > /tmp/step-{k}.txt\"]"));
                w(out, format_args!("RUN make -j\"$JOBS\" -C src/{k} && make install PREFIX=\"$APP_HOME\""));
            }
            2 => {
                w(out, format_args!("COPY --chown=app:app src/module-{k}/ ./src/module-{k}/"));
                w(out, format_args!("COPY Cargo.toml Cargo.lock \"./crates/{k}/\""));
                if s > 0 {
                    w(
                        out,
                        format_args!(
                            "COPY --from=stage{} --chown=1000:1000 /opt/app{}/bin/ /usr/local/bin/",
                            s - 1,
                            s - 1
                        ),
                    );
                }
            }
            3 => {
                w(out, format_args!(""));
                w(out, format_args!("ENV STEP_{}=value-{k} LAST=\"${{APP_HOME}}/step {k}\" \\", k % 5));
                w(out, format_args!("    RUST_LOG=info,frontend=debug"));
            }
            4 => {
                w(out, format_args!("WORKDIR src/module-{k}"));
                w(out, format_args!("RUN cargo build --release --locked \\"));
                w(out, format_args!("      --target-dir /tmp/target \\"));
                w(out, format_args!("    && cp /tmp/target/release/app-{k} \"$APP_HOME/bin/\""));
                w(out, format_args!("WORKDIR $APP_HOME"));
            }
            5 => {
                w(out, format_args!("USER app:app"));
                w(out, format_args!("RUN id && ls -la \"$HOME\" # not a comment for the parser"));
                w(out, format_args!("USER root"));
            }
            6 => {
                w(out, format_args!("EXPOSE 80{} 443/tcp 53/udp", k % 10));
                w(out, format_args!("LABEL step.{k}=\"done\""));
                w(out, format_args!("ARG CACHE_BUST_{k}=\"${{VERSION}}-{k}\""));
            }
            _ => {
                w(out, format_args!("# A comment between steps"));
                w(out, format_args!("#   with a second line"));
                w(out, format_args!(""));
                w(out, format_args!("RUN echo \"${{GREETING}}, step {k}\" \\"));
                w(out, format_args!("  && test -n \"${{STEP_1:-}}\" \\"));
                w(out, format_args!("  && echo ok"));
            }
        }
    }
    w(out, format_args!("VOLUME [\"/data\", \"/var/log/app\"]"));
    w(out, format_args!("STOPSIGNAL SIGTERM"));
    w(out, format_args!("SHELL [\"/bin/bash\", \"-o\", \"pipefail\", \"-c\"]"));
    w(out, format_args!("RUN echo \"running under bash\" | tee /tmp/shell.txt"));
    w(out, format_args!("MAINTAINER Jane Doe <jane@example.com>"));
    w(out, format_args!("ENTRYPOINT [\"/usr/local/bin/entrypoint.sh\"]"));
    w(out, format_args!("CMD [\"app\", \"--serve\", \"--port\", \"8080\"]"));
    w(out, format_args!(""));
}

/// A Dockerfile of at least `lines` lines.
fn dockerfile(lines: usize) -> String {
    let mut out = String::new();
    out.push_str("# syntax=docker/dockerfile:1\n");
    out.push_str("# A generated Dockerfile for the frontend benchmark.\n");
    out.push_str(
        "ARG REGISTRY=docker.io/library\nARG BASE=debian\nARG DEBIAN=bookworm-slim\nARG VERSION=1.0\n\n",
    );
    let mut s = 0;
    while out.lines().count() < lines {
        stage(&mut out, s);
        s += 1;
    }
    out.push_str("FROM scratch AS final\n");
    out.push_str(&format!("COPY --from=stage{} /opt/app{}/bin/ /bin/\n", s - 1, s - 1));
    out.push_str("CMD /bin/app --serve\n");
    out
}

fn bench(c: &mut Criterion) {
    let wanted = std::env::var("FRONTEND_BENCH_LINES").ok().and_then(|n| n.parse().ok()).unwrap_or(LINES);
    let text = dockerfile(wanted);
    let lines = text.lines().count();
    let options = options();
    let def = frontend::build_definition("Dockerfile", &text, &options, &Resolver)
        .unwrap_or_else(|e| panic!("the generated Dockerfile must lower: {e}"));
    let steps: usize = def.stages.iter().map(|s| s.steps.len()).sum();
    assert!(steps > 2_000, "only {steps} steps");
    eprintln!(
        "generated Dockerfile: {lines} lines, {} bytes, {} stages, {steps} steps",
        text.len(),
        def.stages.len()
    );

    let mut group = c.benchmark_group("frontend");
    group.sample_size(20).measurement_time(Duration::from_secs(6)).warm_up_time(Duration::from_secs(1));
    group.throughput(Throughput::Elements(lines as u64));
    group.bench_function("parse_lower_10k_lines", |b| {
        b.iter(|| frontend::build_definition("Dockerfile", black_box(&text), &options, &Resolver).unwrap())
    });
    group.finish();

    // The parse step alone (BuildKit's AST, no lowering).
    frontend::parse("Dockerfile", &text)
        .unwrap_or_else(|e| panic!("the generated Dockerfile must parse: {e}"));
    let mut group = c.benchmark_group("frontend");
    group.sample_size(20).measurement_time(Duration::from_secs(3)).warm_up_time(Duration::from_secs(1));
    group.throughput(Throughput::Elements(lines as u64));
    group.bench_function("parse_10k_lines", |b| {
        b.iter(|| frontend::parse("Dockerfile", black_box(&text)).unwrap())
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
