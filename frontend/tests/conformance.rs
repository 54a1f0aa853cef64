//! BuildKit's own shell-expansion tables and parser test files (third-party data under
//! `../shared/conformance`, `test_support::shared_path`). Without that directory every test here is skipped, which under
//! `CI=true` is a failure (see `test_support::skip_unless_ci`).

use std::path::PathBuf;

use frontend::{expand_word, expand_words};

fn shell_dir() -> Option<PathBuf> {
    let dir = test_support::shared_path("conformance/buildkit-parser/shell");
    if dir.is_dir() {
        Some(dir)
    } else {
        test_support::skip_unless_ci(&format!("{} is absent", dir.display()));
        None
    }
}

/// Cases we deliberately do not match: none.
const KNOWN_DIFFERENCES: &[&str] = &[];

#[test]
fn env_var_test() {
    let Some(dir) = shell_dir() else { return };
    let data = std::fs::read_to_string(dir.join("envVarTest")).unwrap();
    // The environment of BuildKit's lex_test.go.
    let env: Vec<(String, String)> =
        [("PWD", "/home"), ("SHELL", "bash"), ("KOREAN", "한국어"), ("NULL", "")]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
    let (mut passed, mut total) = (0, 0);
    let mut failures = Vec::new();
    for line in data.lines() {
        if line.trim().is_empty() || line.starts_with('#') {
            continue;
        }
        let fields: Vec<&str> = line.split('|').collect();
        assert_eq!(fields.len(), 3, "bad line {line:?}");
        let (platform, input, expected) = (fields[0].trim(), fields[1].trim(), fields[2].trim());
        if platform == "W" || KNOWN_DIFFERENCES.contains(&input) {
            continue;
        }
        total += 1;
        let got = expand_word(input, &env);
        let ok = match (&got, expected) {
            (Err(_), "error") => true,
            (Ok(got), expected) => got == expected && expected != "error",
            _ => false,
        };
        if ok {
            passed += 1;
        } else {
            failures.push(format!("{input:?}: expected {expected:?}, got {got:?}"));
        }
    }
    println!("envVarTest: {passed}/{total} passed");
    assert!(total > 200, "only {total} cases read");
    assert!(failures.is_empty(), "{} failures:\n{}", failures.len(), failures.join("\n"));
}

#[test]
fn words_test() {
    let Some(dir) = shell_dir() else { return };
    let data = std::fs::read_to_string(dir.join("wordsTest")).unwrap();
    let mut env: Vec<(String, String)> = Vec::new();
    let (mut passed, mut failures) = (0, Vec::new());
    for line in data.lines() {
        if line.trim().is_empty() || line.starts_with('#') {
            continue;
        }
        if let Some(rest) = line.strip_prefix("ENV ") {
            let (k, v) = rest.trim_start_matches(' ').split_once('=').unwrap();
            env.push((k.into(), v.into()));
            continue;
        }
        let (input, expected) = line.split_once('|').unwrap();
        let input = input.trim();
        let expected: Vec<&str> = expected.trim_start_matches(' ').split(',').collect();
        let got = expand_words(input, &env, '\\');
        let ok = match &got {
            Err(_) => expected == ["error"],
            Ok(words) => *words == expected,
        };
        if ok {
            passed += 1;
        } else {
            failures.push(format!("{input:?}: expected {expected:?}, got {got:?}"));
        }
    }
    println!("wordsTest: {passed} passed");
    assert!(passed > 20);
    assert!(failures.is_empty(), "{} failures:\n{}", failures.len(), failures.join("\n"));
}

fn parser_dir() -> Option<PathBuf> {
    let dir = test_support::shared_path("conformance/buildkit-parser");
    if dir.join("testfiles").is_dir() {
        Some(dir)
    } else {
        test_support::skip_unless_ci(&format!("{} is absent", dir.display()));
        None
    }
}

/// Parser cases we deliberately do not match, with the reason: none.
const PARSER_EXCEPTIONS: &[(&str, &str)] = &[];

fn case_dirs(dir: &std::path::Path) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> =
        std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).filter(|p| p.is_dir()).collect();
    dirs.sort();
    dirs
}

/// BuildKit's `TestParseCases`: our AST dump equals BuildKit's `result` byte for byte.
#[test]
fn buildkit_parser_testfiles() {
    let Some(dir) = parser_dir() else { return };
    let (mut passed, mut total, mut failures) = (0, 0, Vec::new());
    for case in case_dirs(&dir.join("testfiles")) {
        let name = case.file_name().unwrap().to_string_lossy().into_owned();
        if PARSER_EXCEPTIONS.iter().any(|(n, _)| *n == name) {
            continue;
        }
        total += 1;
        let text = std::fs::read(case.join("Dockerfile")).unwrap();
        let expected = std::fs::read_to_string(case.join("result")).unwrap().replace("\r\n", "\n");
        let got = frontend::decode("Dockerfile", &text)
            .and_then(frontend::dump_ast)
            .map(|d| d.replace("\r\n", "\n"));
        match got {
            Ok(got) if got == expected => passed += 1,
            Ok(got) => failures.push(format!("{name}:\n--- expected\n{expected}--- got\n{got}")),
            Err(e) => failures.push(format!("{name}: error {e}")),
        }
    }
    println!("buildkit-parser testfiles: {passed}/{total} passed");
    assert_eq!(total, 33 - PARSER_EXCEPTIONS.len(), "case count changed");
    assert!(failures.is_empty(), "{} failures:\n{}", failures.len(), failures.join("\n"));
}

/// BuildKit's `TestParseErrorCases`: every negative case is rejected.
#[test]
fn buildkit_parser_negative_testfiles() {
    let Some(dir) = parser_dir() else { return };
    let mut total = 0;
    for case in case_dirs(&dir.join("testfiles-negative")) {
        total += 1;
        let text = std::fs::read(case.join("Dockerfile")).unwrap();
        let got = frontend::decode("Dockerfile", &text).and_then(frontend::dump_ast);
        assert!(got.is_err(), "{} was accepted: {got:?}", case.display());
    }
    println!("buildkit-parser testfiles-negative: {total}/{total} rejected");
    assert_eq!(total, 4);
}
