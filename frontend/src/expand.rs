/// Expands `$VAR`, `${VAR}` and BuildKit's `${VAR:-word}` family in `word`.
pub fn expand_word(word: &str, env: &[(String, String)]) -> Result<String, String> {
    let _ = (word, env);
    todo!()
}
