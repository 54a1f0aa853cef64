//! docker-compose 1.29 (Debian's, with its docker-py 5) against `rbuild system service`, end to
//! end: a built and health-checked web service, a client that waits for it (with a check of
//! its own from compose's `healthcheck:`), a published port, a named volume, `ps`, `logs`, `exec`, an `up` that changes nothing, one that recreates, and
//! `down -v`; rbuild's own CLI must see the same store.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use test_support::containers::Env;
use test_support::dockerapi::{Service, on_a_terminal, triple};

use test_support::{free_port, http_get, http_get_when_served};

fn compose_file(port: u16, greeting: &str) -> String {
    format!(
        r#"version: "2.4"
services:
  web:
    build: ./web
    environment:
      GREETING: {greeting}
    ports:
      - "127.0.0.1:{port}:80"
    networks: [app]
  client:
    image: busybox
    depends_on:
      web:
        condition: service_healthy
    environment:
      TARGET: http://web/
    command: sh -c 'echo fetching $$TARGET; wget -qO /data/page.html $$TARGET && echo fetched; exec sleep 1000'
    volumes:
      - data:/data
    healthcheck:
      test: ["CMD", "test", "-s", "/data/page.html"]
      interval: 1s
    networks: [app]
networks:
  app: {{}}
volumes:
  data: {{}}
"#
    )
}

struct Project<'a> {
    api: &'a Service,
    dir: PathBuf,
}

impl Project<'_> {
    /// `docker-compose ARGS` in the project's directory: (exit code, stdout, stderr).
    fn run(&self, args: &[&str]) -> (i32, String, String) {
        triple(
            self.api
                .client("/usr/bin/docker-compose")
                .args(args)
                .current_dir(&self.dir)
                .stdin(Stdio::null())
                .output()
                .expect("docker-compose runs (scripts/test.sh installs it)"),
        )
    }

    /// `docker-compose ARGS`, which must succeed; its stdout.
    fn ok(&self, args: &[&str]) -> String {
        let (code, out, err) = self.run(args);
        assert_eq!(code, 0, "docker-compose {args:?}:\n{out}{err}");
        out
    }

    fn write(&self, port: u16, greeting: &str) {
        std::fs::write(self.dir.join("docker-compose.yml"), compose_file(port, greeting)).unwrap();
    }
}

fn web_context(dir: &Path) {
    let web = dir.join("web");
    std::fs::create_dir_all(&web).unwrap();
    std::fs::write(web.join("index.html"), "hello from compose web\n").unwrap();
    std::fs::write(
        web.join("Dockerfile"),
        "FROM busybox\n\
         COPY index.html /www/index.html\n\
         HEALTHCHECK --interval=1s --timeout=2s --retries=30 CMD wget -qO- http://127.0.0.1/ || exit 1\n\
         CMD [\"httpd\", \"-f\", \"-v\", \"-p\", \"80\", \"-h\", \"/www\"]\n",
    )
    .unwrap();
}

/// `rbuild ps -a` as `ID NAME` lines, sorted.
fn containers(e: &Env) -> Vec<String> {
    let mut v = e.ps(&["-a", "--no-trunc", "--format", "{{.ID}} {{.Names}}"]);
    v.sort();
    v
}

#[test]
fn docker_compose_builds_waits_for_health_publishes_recreates_and_takes_a_project_down() {
    let e = Env::new(env!("CARGO_BIN_EXE_rbuild"));
    let api = Service::start(&e);
    let p = Project { api: &api, dir: e.s.path().join("proj") };
    web_context(&p.dir);
    let port = free_port();
    p.write(port, "hi");

    p.ok(&["up", "-d"]);
    // `service_healthy`: the client starts only once web answers, so its first fetch works.
    e.wait_for_log("proj_client_1", "fetched");
    assert_eq!(e.ok(&["exec", "proj_client_1", "cat", "/data/page.html"]), "hello from compose web\n");
    assert_eq!(http_get(port), "hello from compose web\n");
    assert_eq!(e.inspect("proj_web_1", "{{.State.Health.Status}}"), "healthy");
    assert!(e.volumes().iter().any(|v| v == "proj_data"), "{:?}", e.volumes());

    let ps = p.ok(&["ps"]);
    let row =
        |name: &str| ps.lines().find(|l| l.starts_with(name)).unwrap_or_else(|| panic!("{name} in\n{ps}"));
    assert!(row("proj_web_1").contains("Up (healthy)"), "{ps}");
    assert!(row("proj_web_1").contains(&format!("127.0.0.1:{port}->80/tcp")), "{ps}");
    assert!(row("proj_client_1").contains("Up"), "{ps}");
    // The client's check is compose's `healthcheck:` (null timeout and retries from docker-py).
    e.wait_until("the client's health check passes", || {
        e.inspect("proj_client_1", "{{.State.Health.Status}}") == "healthy"
    });

    let logs = p.ok(&["logs", "--no-color"]);
    for want in ["client_1  | fetching http://web/", "client_1  | fetched", "web_1     | "] {
        assert!(logs.contains(want), "{want:?} in\n{logs}");
    }
    assert!(logs.lines().any(|l| l.starts_with("web_1") && l.ends_with("response:200")), "{logs}");

    assert_eq!(p.ok(&["exec", "-T", "web", "cat", "/www/index.html"]), "hello from compose web\n");
    // Compose runs `docker exec -it` for a tty.
    let mut script = api.client("/usr/bin/script");
    script.current_dir(&p.dir);
    let (code, out, err) = on_a_terminal(
        script,
        "/usr/bin/docker-compose exec web sh -c '[ -t 1 ] && echo on a tty; echo $GREETING'",
    );
    assert_eq!(code, 0, "{out}{err}");
    let lines: Vec<&str> = out.lines().map(|l| l.trim_end_matches('\r')).collect();
    assert_eq!(lines, ["on a tty", "hi"], "{out:?}");

    // The same file again: the config hashes agree, nothing is recreated.
    let before = containers(&e);
    let (_, _, err) = p.run(&["up", "-d"]);
    assert!(err.contains("proj_web_1 is up-to-date") && err.contains("proj_client_1 is up-to-date"), "{err}");
    assert_eq!(containers(&e), before);

    // A changed environment recreates web alone (compose renames the old one away first).
    p.write(port, "hello");
    let (code, out, err) = p.run(&["up", "-d"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(err.contains("Recreating proj_web_1"), "{err}");
    let after = containers(&e);
    assert_eq!(after.len(), 2, "{after:?}");
    let id_of = |rows: &[String], name: &str| {
        rows.iter().find(|r| r.ends_with(&format!(" {name}"))).map(|r| r[..64].to_string())
    };
    assert_ne!(id_of(&after, "proj_web_1"), id_of(&before, "proj_web_1"));
    assert_eq!(id_of(&after, "proj_client_1"), id_of(&before, "proj_client_1"));
    assert!(p.ok(&["exec", "-T", "web", "env"]).lines().any(|l| l == "GREETING=hello"));
    // The new web: its port is published before its httpd listens.
    assert_eq!(http_get_when_served(port), "hello from compose web\n");

    p.ok(&["down", "-v"]);
    assert_eq!(e.ok(&["ps", "-a", "-q"]), "");
    let nets = e.ok(&["network", "ls", "--format", "{{.Name}}"]);
    assert_eq!(nets.lines().collect::<Vec<_>>(), ["bridge", "host", "none"]);
    assert_eq!(e.volumes(), Vec::<String>::new());
}
