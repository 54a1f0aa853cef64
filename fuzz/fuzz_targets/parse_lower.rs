//! Fuzz target: the Dockerfile frontend must never panic, whatever the text.
//!
//! Feeds the input to `frontend::build_definition` (parse + lower), `frontend::parse`,
//! `frontend::dump_ast` and `frontend::expand_word`; non-UTF-8 input to
//! `frontend::build_definition_bytes`.
//!
//! Comment lines in the input steer the harness without changing what the parser sees:
//! `#onbuild <instruction>` lines become the `OnBuild` triggers the resolver reports for every
//! base image whose reference has no `:`, and a `#target <name>` line sets `--target`.

#![no_main]

use frontend::{Base, BaseConfig, CopyFrom, ImageResolver, LowerOptions, Op, ResolveError, RunMount};
use libfuzzer_sys::fuzz_target;

struct Resolver {
    on_build: Vec<String>,
}

impl ImageResolver for Resolver {
    fn resolve(&self, reference: &str) -> Result<BaseConfig, ResolveError> {
        if reference.contains("missing") {
            return Err(format!("image {reference} not found").into());
        }
        Ok(BaseConfig {
            env: vec![
                "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into(),
                "HOME=/root".into(),
                "LANG=C.UTF-8".into(),
                "EMPTY".into(),
            ],
            working_dir: if reference.len() % 2 == 0 { Some("/app".into()) } else { None },
            // Triggers only for some references, so both paths are taken.
            on_build: if reference.contains(':') { Vec::new() } else { self.on_build.clone() },
            platform: None,
        })
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        // Not UTF-8: the bytes entry point must report it as an error, not panic.
        let options = LowerOptions::default();
        let resolver = Resolver { on_build: Vec::new() };
        assert!(frontend::build_definition_bytes("Dockerfile", data, &options, &resolver).is_err());
        return;
    };

    let mut on_build = Vec::new();
    let mut target = None;
    for line in text.lines() {
        if let Some(trigger) = line.strip_prefix("#onbuild ") {
            on_build.push(trigger.to_owned());
        } else if let Some(name) = line.strip_prefix("#target ") {
            target = Some(name.trim().to_owned());
        }
    }
    let resolver = Resolver { on_build };
    let options = LowerOptions {
        build_args: vec![
            ("VERSION".into(), "1.2.3".into()),
            ("BASE".into(), "alpine".into()),
            ("HTTP_PROXY".into(), "http://proxy:3128".into()),
            ("EMPTY".into(), String::new()),
        ],
        target,
    };

    if let Ok(def) = frontend::build_definition("Dockerfile", text, &options, &resolver) {
        assert!(def.target < def.stages.len(), "target {} of {} stages", def.target, def.stages.len());
        for (i, stage) in def.stages.iter().enumerate() {
            assert_eq!(stage.index, i);
            if let Base::Stage(j) = stage.base {
                assert!(j < i, "stage {i} based on stage {j}");
            }
            for step in &stage.steps {
                match &step.op {
                    Op::Copy(copy) => {
                        if let Some(CopyFrom::Stage(j)) = copy.from {
                            assert!(j < i, "stage {i} copies from stage {j}");
                        }
                    }
                    Op::Workdir(dir) => assert!(dir.starts_with('/'), "relative WORKDIR {dir:?}"),
                    Op::Run(run) => {
                        for mount in &run.mounts {
                            if let Some(j) = mount.from_stage() {
                                assert!(j < i, "stage {i} mounts stage {j}");
                            }
                            let target = match mount {
                                RunMount::Bind { target, .. }
                                | RunMount::Cache { target, .. }
                                | RunMount::Tmpfs { target, .. } => Some(target),
                                RunMount::Secret { target, .. } => target.as_ref(),
                            };
                            if let Some(t) = target {
                                assert!(t.starts_with('/'), "relative mount target {t:?}");
                            }
                        }
                    }
                    _ => {}
                }
            }
        }
    }

    // The parser alone, and BuildKit's AST dump (its own error path for unknown instructions).
    let _ = frontend::parse("Dockerfile", text);
    let _ = frontend::dump_ast(text);

    let env = vec![
        ("A".to_owned(), "a".to_owned()),
        ("B".to_owned(), "two words".to_owned()),
        ("EMPTY".to_owned(), String::new()),
    ];
    let _ = frontend::expand_word(text, &env);
    let _ = frontend::expand_words(text, &env, '`');
});
