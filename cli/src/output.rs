//! Everything the CLI prints the way docker's CLI prints it: `--format` templates (the part of
//! Go's text/template people use), tables laid out as Go's tabwriter does, sizes, durations,
//! prompts, and the errors of a command run over several names.

use std::io::{self, BufRead, Write};

use anyhow::{Result, bail};
use serde_json::Value;

// ---------------------------------------------------------------------------------------------
// Templates

enum Node {
    Text(String),
    /// A pipeline: `.A.B`, `json .A`, `index .A "k" "l"`, `upper .A`, `lower .A`, `join .A ","`.
    Action(Vec<String>),
    Range(Vec<String>, Vec<Node>),
}

/// A `--format` value, rendered over JSON values.
///
/// - Over one object (`inspect`): Go's template forms people use, `{{.State.ExitCode}}`,
///   `{{json .Config}}`, `{{index .NetworkSettings.Networks "net"}}`, `{{range ...}}{{end}}`
///   with `.` rebound to each element, `upper`, `lower`, `join`. A missing field prints
///   `<no value>`, as Go does for a map.
/// - Over the rows of a list ([`Format::for_list`]): the same, and `table` prints a header
///   and aligns the columns as docker's tables; `json` is one JSON object per line; the fields
///   are checked when the format is read, so `{{.Nope}}` is an error naming the fields.
pub struct Format {
    nodes: Vec<Node>,
    table: bool,
}

/// The fields of a list's rows: (name in templates, column header).
pub type Fields = [(&'static str, &'static str)];

impl Format {
    /// A template over one JSON value (`inspect --format`).
    pub fn parse(src: &str) -> Result<Format> {
        let src = src.replace("\\t", "\t").replace("\\n", "\n");
        let mut tokens = Vec::new();
        let mut rest = src.as_str();
        while let Some(start) = rest.find("{{") {
            if start > 0 {
                tokens.push((false, rest[..start].to_string()));
            }
            let Some(end) = rest[start..].find("}}") else {
                bail!("--format {src:?}: an action `{{{{` is not closed with `}}}}`");
            };
            let inner =
                rest[start + 2..start + end].trim().trim_start_matches('-').trim_end_matches('-').trim();
            tokens.push((true, inner.to_string()));
            rest = &rest[start + end + 2..];
        }
        if !rest.is_empty() {
            tokens.push((false, rest.to_string()));
        }
        let mut it = tokens.into_iter();
        let nodes = parse_nodes(&mut it, &src, false)?;
        Ok(Format { nodes, table: false })
    }

    /// A list's `--format`: `table` (the default columns `default_table`), `table TEMPLATE`,
    /// `json`, or a template; every `.Field` it names must be one of `fields`.
    pub fn for_list(format: &str, fields: &Fields, default_table: &str) -> Result<Format> {
        let trimmed = format.trim();
        if trimmed == "json" {
            return Format::parse("{{json .}}");
        }
        let (table, body) = match trimmed.strip_prefix("table") {
            Some("") => (true, default_table),
            Some(rest) if rest.starts_with([' ', '\t']) => (true, rest.trim()),
            _ => (false, trimmed),
        };
        let mut f = Format::parse(body)?;
        f.table = table;
        for words in top_level_actions(&f.nodes) {
            for w in words {
                let Some(path) = w.strip_prefix('.') else { continue };
                let name = path.split('.').next().unwrap_or_default();
                if !name.is_empty() && !fields.iter().any(|(f, _)| *f == name) {
                    let names: Vec<String> = fields.iter().map(|(f, _)| format!(".{f}")).collect();
                    bail!(
                        "--format {format:?}: cannot evaluate {{{{{}}}}}: the fields are {} (and `json .`)",
                        words.join(" "),
                        names.join(", ")
                    );
                }
            }
        }
        Ok(f)
    }

    /// The template applied to `value`.
    pub fn render(&self, value: &Value) -> Result<String> {
        let mut out = String::new();
        render(&self.nodes, value, &mut out)?;
        Ok(out)
    }

    /// Renders each row and writes them, a header first and the columns aligned for a table.
    pub fn write_rows(&self, fields: &Fields, rows: &[Value], out: &mut impl Write) -> Result<()> {
        let mut lines = Vec::new();
        if self.table {
            let header: serde_json::Map<String, Value> =
                fields.iter().map(|(f, h)| (f.to_string(), Value::String(h.to_string()))).collect();
            lines.push(self.render(&Value::Object(header))?);
        }
        for row in rows {
            lines.push(self.render(row)?);
        }
        if self.table {
            let lines: Vec<String> = lines.iter().flat_map(|l| l.split('\n').map(str::to_string)).collect();
            out.write_all(tabulate(&lines).as_bytes())?;
        } else {
            for l in lines {
                writeln!(out, "{l}")?;
            }
        }
        Ok(())
    }
}

/// The actions outside any `range` (where `.` is the row).
fn top_level_actions(nodes: &[Node]) -> Vec<&Vec<String>> {
    nodes
        .iter()
        .filter_map(|n| match n {
            Node::Action(w) | Node::Range(w, _) => Some(w),
            Node::Text(_) => None,
        })
        .collect()
}

fn words(action: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut chars = action.chars().peekable();
    while let Some(&c) = chars.peek() {
        if c.is_whitespace() {
            chars.next();
        } else if c == '"' {
            chars.next();
            let mut s = String::from("\"");
            for c in chars.by_ref() {
                if c == '"' {
                    break;
                }
                s.push(c);
            }
            out.push(s);
        } else {
            let mut s = String::new();
            while let Some(&c) = chars.peek() {
                if c.is_whitespace() {
                    break;
                }
                s.push(c);
                chars.next();
            }
            out.push(s);
        }
    }
    out
}

fn parse_nodes(
    it: &mut impl Iterator<Item = (bool, String)>,
    src: &str,
    in_range: bool,
) -> Result<Vec<Node>> {
    let mut nodes = Vec::new();
    while let Some((action, text)) = it.next() {
        if !action {
            nodes.push(Node::Text(text));
            continue;
        }
        let w = words(&text);
        match w.first().map(String::as_str) {
            Some("end") if in_range => return Ok(nodes),
            Some("end") => bail!("--format {src:?}: `{{{{end}}}}` without `{{{{range}}}}`"),
            Some("range") => {
                let body = parse_nodes(it, src, true)?;
                nodes.push(Node::Range(w[1..].to_vec(), body));
            }
            Some(_) => nodes.push(Node::Action(w)),
            None => bail!("--format {src:?}: empty action `{{{{}}}}`"),
        }
    }
    if in_range {
        bail!("--format {src:?}: `{{{{range}}}}` without `{{{{end}}}}`");
    }
    Ok(nodes)
}

fn lookup<'a>(dot: &'a Value, path: &str) -> Result<Option<&'a Value>> {
    if path == "." {
        return Ok(Some(dot));
    }
    let Some(rest) = path.strip_prefix('.') else {
        bail!("cannot evaluate {path:?}: expected a field like .State.Status");
    };
    let mut v = dot;
    for key in rest.split('.') {
        match v {
            Value::Object(m) => match m.get(key) {
                Some(next) => v = next,
                None => return Ok(None),
            },
            _ => bail!("can't evaluate field {key} in type {}", type_name(v)),
        }
    }
    Ok(Some(v))
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "nil",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "slice",
        Value::Object(_) => "map",
    }
}

fn evaluate(words: &[String], dot: &Value) -> Result<Value> {
    let arg = |w: &String| -> Result<Value> {
        if let Some(s) = w.strip_prefix('"') {
            return Ok(Value::String(s.to_string()));
        }
        if let Ok(n) = w.parse::<i64>() {
            return Ok(Value::from(n));
        }
        Ok(lookup(dot, w)?.cloned().unwrap_or(Value::Null))
    };
    match words[0].as_str() {
        "json" if words.len() == 2 => Ok(Value::String(arg(&words[1])?.to_string())),
        "upper" if words.len() == 2 => Ok(Value::String(plain(&arg(&words[1])?).to_uppercase())),
        "lower" if words.len() == 2 => Ok(Value::String(plain(&arg(&words[1])?).to_lowercase())),
        "join" if words.len() == 3 => match (arg(&words[1])?, arg(&words[2])?) {
            (Value::Array(items), Value::String(sep)) => {
                Ok(Value::String(items.iter().map(plain).collect::<Vec<_>>().join(&sep)))
            }
            (v, _) => bail!("join: can't join an item of type {}", type_name(&v)),
        },
        "index" if words.len() >= 3 => {
            let mut v = arg(&words[1])?;
            for k in &words[2..] {
                v = match (v, arg(k)?) {
                    (Value::Object(m), Value::String(k)) => m.get(&k).cloned().unwrap_or(Value::Null),
                    (Value::Array(a), Value::Number(n)) => {
                        n.as_u64().and_then(|i| a.get(i as usize).cloned()).unwrap_or(Value::Null)
                    }
                    (v, _) => bail!("can't index item of type {}", type_name(&v)),
                };
            }
            Ok(v)
        }
        w if w.starts_with('.') && words.len() == 1 => Ok(lookup(dot, w)?.cloned().unwrap_or(Value::Null)),
        other => {
            bail!("function {other:?} not defined (rbuild knows json, index, join, upper, lower and .Fields)")
        }
    }
}

/// Go's default formatting of a value.
fn plain(v: &Value) -> String {
    match v {
        Value::Null => "<no value>".into(),
        Value::String(s) => s.clone(),
        Value::Array(a) => format!("[{}]", a.iter().map(plain).collect::<Vec<_>>().join(" ")),
        Value::Object(m) => {
            format!(
                "map[{}]",
                m.iter().map(|(k, v)| format!("{k}:{}", plain(v))).collect::<Vec<_>>().join(" ")
            )
        }
        other => other.to_string(),
    }
}

fn render(nodes: &[Node], dot: &Value, out: &mut String) -> Result<()> {
    for n in nodes {
        match n {
            Node::Text(t) => out.push_str(t),
            Node::Action(w) => out.push_str(&plain(&evaluate(w, dot)?)),
            Node::Range(w, body) => match evaluate(w, dot)? {
                Value::Array(items) => {
                    for item in &items {
                        render(body, item, out)?;
                    }
                }
                Value::Object(m) => {
                    for item in m.values() {
                        render(body, item, out)?;
                    }
                }
                Value::Null => {}
                v => bail!("range can't iterate over {}", plain(&v)),
            },
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Tables, sizes, times (github.com/docker/go-units, text/tabwriter)

/// Lays out tab-separated lines as Go's `tabwriter.NewWriter(w, 10, 1, 3, ' ', 0)` does for
/// docker's tables: each cell but the last of a line is padded to its column's widest cell + 3,
/// and at least 10.
pub fn tabulate(lines: &[String]) -> String {
    let rows: Vec<Vec<&str>> = lines.iter().map(|l| l.split('\t').collect()).collect();
    let mut widths: Vec<usize> = Vec::new();
    for row in &rows {
        for (i, cell) in row.iter().enumerate().take(row.len().saturating_sub(1)) {
            let w = (cell.chars().count() + 3).max(10);
            if widths.len() <= i {
                widths.push(w);
            } else {
                widths[i] = widths[i].max(w);
            }
        }
    }
    let mut out = String::new();
    for row in &rows {
        for (i, cell) in row.iter().enumerate() {
            out.push_str(cell);
            if i + 1 < row.len() {
                out.extend(std::iter::repeat_n(' ', widths[i] - cell.chars().count()));
            }
        }
        out.push('\n');
    }
    out
}

/// `4.26MB`: decimal units with `precision` significant digits, as go-units'
/// `HumanSizeWithPrecision` (`docker images` uses 3, `docker system df` and `diff` sizes 4).
pub fn human_size(n: u64, precision: usize) -> String {
    const UNITS: [&str; 7] = ["B", "kB", "MB", "GB", "TB", "PB", "EB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1000.0 && u < UNITS.len() - 1 {
        v /= 1000.0;
        u += 1;
    }
    // Go's %.*g: `precision` significant digits, trailing zeros dropped.
    let int_digits = if v < 1.0 { 1 } else { (v.log10().floor() as usize) + 1 };
    let decimals = precision.saturating_sub(int_digits);
    let mut s = format!("{v:.decimals$}");
    if s.contains('.') {
        s = s.trim_end_matches('0').trim_end_matches('.').to_string();
    }
    format!("{s}{}", UNITS[u])
}

/// `1.5MiB`: binary units with two decimals at most, as go-units' `BytesSize` (`docker stats`).
pub fn human_binary(n: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    format!("{}{}", (v * 100.0).round() / 100.0, UNITS[u])
}

pub use runtime::container::human_duration;

/// `2 weeks ago` for an RFC 3339 time, or `N/A` without one.
pub fn since(time: Option<&str>) -> String {
    match time.and_then(cache::time::parse_rfc3339) {
        Some(t) => format!("{} ago", human_duration(cache::time::now_unix() - t)),
        None => "N/A".to_string(),
    }
}

/// `s` cut to `max` characters with `…` as the last one, as docker's `Ellipsis`.
pub fn ellipsis(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let mut out: String = s.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

// ---------------------------------------------------------------------------------------------
// Prompts and errors

/// Asks on stderr and reads y/N from stdin, as docker's prune commands do.
pub fn confirm(warning: &str) -> Result<bool> {
    eprint!("WARNING! {warning}\nAre you sure you want to continue? [y/N] ");
    io::stderr().flush()?;
    let mut answer = String::new();
    io::stdin().lock().read_line(&mut answer)?;
    Ok(matches!(answer.trim(), "y" | "Y" | "yes" | "Yes"))
}

/// The end of a command over several names (`rm a b c`): what worked was printed; one failure
/// is the command's error, several are each one `rbuild: error:` line and exit 1.
pub fn finish(mut failed: Vec<anyhow::Error>) -> Result<std::process::ExitCode> {
    match failed.len() {
        0 => Ok(std::process::ExitCode::SUCCESS),
        1 => Err(failed.remove(0)),
        _ => {
            io::stdout().flush()?;
            for e in &failed {
                eprintln!("rbuild: error: {}", crate::describe(e));
            }
            Ok(std::process::ExitCode::FAILURE)
        }
    }
}

/// Runs `f` on each name, printing the name when it worked (as docker's `stop`, `rm`...), then
/// [`finish`]es.
pub fn each(names: &[String], mut f: impl FnMut(&str) -> Result<()>) -> Result<std::process::ExitCode> {
    let mut failed = Vec::new();
    for n in names {
        match f(n) {
            Ok(()) => println!("{n}"),
            Err(e) => failed.push(e),
        }
    }
    finish(failed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn go_template_idioms_over_an_object() {
        let v = json!({
            "State": {"ExitCode": 137, "OOMKilled": true, "Status": "exited"},
            "Name": "/web",
            "NetworkSettings": {"Networks": {"net1": {"IPAddress": "10.89.0.2"}}},
            "Config": {"Env": ["A=1", "B=2"]}
        });
        let r = |t: &str| Format::parse(t).unwrap().render(&v).unwrap();
        assert_eq!(r("{{.State.ExitCode}}"), "137");
        assert_eq!(r("{{.State.OOMKilled}} {{.Name}}"), "true /web");
        assert_eq!(r("{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}"), "10.89.0.2");
        assert_eq!(r("{{index .NetworkSettings.Networks \"net1\" \"IPAddress\"}}"), "10.89.0.2");
        assert_eq!(r("{{json .Config.Env}}"), "[\"A=1\",\"B=2\"]");
        assert_eq!(r("{{join .Config.Env \",\"}}"), "A=1,B=2");
        assert_eq!(r("{{upper .State.Status}}"), "EXITED");
        assert_eq!(r("{{.Missing}}"), "<no value>");
        assert!(Format::parse("{{range .X}}").is_err());
        assert!(Format::parse("{{.State.ExitCode.Nope}}").unwrap().render(&v).is_err());
    }

    const FIELDS: &Fields = &[("Repository", "REPOSITORY"), ("Tag", "TAG"), ("Size", "SIZE")];

    #[test]
    fn list_formats_check_fields_and_print_tables() {
        let rows = [
            json!({"Repository": "busybox", "Tag": "latest", "Size": "4.26MB"}),
            json!({"Repository": "a-much-longer-name", "Tag": "1", "Size": "1kB"}),
        ];
        let write = |f: &Format| {
            let mut out = Vec::new();
            f.write_rows(FIELDS, &rows, &mut out).unwrap();
            String::from_utf8(out).unwrap()
        };
        let t = Format::for_list("table {{.Repository}}:{{ .Tag }}\\t{{.Size}}", FIELDS, "").unwrap();
        assert_eq!(
            write(&t),
            "REPOSITORY:TAG         SIZE\nbusybox:latest         4.26MB\na-much-longer-name:1   1kB\n"
        );
        let default = Format::for_list("table", FIELDS, "{{.Repository}}\t{{.Tag}}").unwrap();
        assert!(write(&default).starts_with("REPOSITORY           TAG\n"));
        let plain = Format::for_list("{{.Tag}}", FIELDS, "").unwrap();
        assert_eq!(write(&plain), "latest\n1\n");
        assert!(
            write(&Format::for_list("json", FIELDS, "").unwrap()).starts_with("{\"Repository\":\"busybox\"")
        );
        let err = Format::for_list("{{.Nope}}", FIELDS, "").err().unwrap().to_string();
        assert!(err.contains(".Repository, .Tag, .Size"), "{err}");
        assert!(Format::for_list("{{.Repository", FIELDS, "").is_err());
    }

    #[test]
    fn tables_align_as_tabwriter_does() {
        let t = tabulate(&["A\tBB\tC".to_string(), "longer value\tx\ty".to_string()]);
        assert_eq!(t, "A              BB        C\nlonger value   x         y\n");
    }

    #[test]
    fn sizes_and_durations_read_as_docker_prints_them() {
        assert_eq!(human_size(0, 3), "0B");
        assert_eq!(human_size(4_260_000, 3), "4.26MB");
        assert_eq!(human_size(2048, 4), "2.048kB");
        assert_eq!(human_size(1_500_000, 4), "1.5MB");
        assert_eq!(human_size(999, 3), "999B");
        assert_eq!(human_binary(1536 * 1024), "1.5MiB");
        assert_eq!(human_binary(10), "10B");
        assert_eq!(human_duration(0), "Less than a second");
        assert_eq!(human_duration(90), "About a minute");
        assert_eq!(human_duration(3 * 3600), "3 hours");
        assert_eq!(human_duration(20 * 86400), "2 weeks");
        assert_eq!(ellipsis("abcdef", 4), "abc…");
        assert_eq!(ellipsis("abc", 4), "abc");
    }
}
