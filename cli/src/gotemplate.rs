//! The part of Go's text/template that `inspect --format` is used with: `{{.A.B}}`,
//! `{{json .A}}`, `{{index .A "key"}}`, `{{range .A}}...{{end}}` (with `.` rebound to each
//! element), `{{println}}`-free text, over a JSON value.

use anyhow::{Result, bail};
use serde_json::Value;

enum Node {
    Text(String),
    /// A pipeline: `.A.B`, `json .A`, `index .A "k" "l"`, `upper .A`, `lower .A`.
    Action(Vec<String>),
    Range(Vec<String>, Vec<Node>),
}

pub struct GoTemplate {
    nodes: Vec<Node>,
}

impl GoTemplate {
    pub fn parse(src: &str) -> Result<GoTemplate> {
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
        Ok(GoTemplate { nodes })
    }

    pub fn render(&self, root: &Value) -> Result<String> {
        let mut out = String::new();
        render(&self.nodes, root, &mut out)?;
        Ok(out)
    }
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
        other => bail!("function {other:?} not defined (rbuild knows json, index, upper, lower and .Fields)"),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_idioms() {
        let v: Value = serde_json::json!({
            "State": {"ExitCode": 137, "OOMKilled": true, "Status": "exited"},
            "Name": "/web",
            "NetworkSettings": {"Networks": {"net1": {"IPAddress": "10.89.0.2"}}},
            "Config": {"Env": ["A=1", "B=2"]}
        });
        let r = |t: &str| GoTemplate::parse(t).unwrap().render(&v).unwrap();
        assert_eq!(r("{{.State.ExitCode}}"), "137");
        assert_eq!(r("{{.State.OOMKilled}} {{.Name}}"), "true /web");
        assert_eq!(r("{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}"), "10.89.0.2");
        assert_eq!(r("{{index .NetworkSettings.Networks \"net1\" \"IPAddress\"}}"), "10.89.0.2");
        assert_eq!(r("{{json .Config.Env}}"), "[\"A=1\",\"B=2\"]");
        assert_eq!(r("{{.Missing}}"), "<no value>");
        assert!(GoTemplate::parse("{{range .X}}").is_err());
        assert!(GoTemplate::parse("{{.State.ExitCode.Nope}}").unwrap().render(&v).is_err());
    }
}
