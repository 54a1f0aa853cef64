use std::fmt;

use serde::{Deserialize, Serialize};

/// A place in a Dockerfile: `file:line:column`, 1-based.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Location {
    pub file: String,
    pub line: usize,
    pub column: usize,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.file, self.line, self.column)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Anything wrong with the Dockerfile, at a place in it.
    #[error("{location}: {message}")]
    Syntax { location: Location, message: String },
}
