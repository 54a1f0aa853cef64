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

/// Why an [`ImageResolver`](crate::ImageResolver) could not answer: the resolver's own error
/// (the store's, a registry's), kept whole so the caller can tell what went wrong.
pub type ResolveError = Box<dyn std::error::Error + Send + Sync>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Anything wrong with the Dockerfile, at a place in it.
    #[error("{location}: {message}")]
    Syntax {
        location: Location,
        message: String,
        /// The Dockerfile line the location points at (without its line ending), for showing
        /// under the error; `None` when the error is not about one line.
        source_line: Option<String>,
    },
    /// The image a `FROM` names could not be looked up (its ENV and WORKDIR are needed to
    /// expand the stage); `source` says why.
    #[error("{location}: FROM {reference}")]
    BaseImage {
        location: Location,
        reference: String,
        source_line: Option<String>,
        #[source]
        source: ResolveError,
    },
}

impl Location {
    /// The location of byte `offset` in `text` (the Dockerfile called `file`): 1-based line, and
    /// 1-based column counted in characters.
    pub fn at(file: &str, text: &str, offset: usize) -> Location {
        let mut offset = offset.min(text.len());
        while !text.is_char_boundary(offset) {
            offset -= 1;
        }
        let before = &text[..offset];
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        let column = text[line_start..offset].chars().count() + 1;
        Location { file: file.to_owned(), line, column }
    }
}

impl Error {
    pub(crate) fn at(location: Location, message: impl Into<String>) -> Error {
        Error::Syntax { location, message: message.into(), source_line: None }
    }

    /// Fills in the source line from `text` (the Dockerfile the location is in) if not set.
    pub(crate) fn with_source(mut self, text: &str) -> Error {
        let (Error::Syntax { location, source_line, .. } | Error::BaseImage { location, source_line, .. }) =
            &mut self;
        if source_line.is_none() {
            let text = text.strip_prefix('\u{feff}').unwrap_or(text);
            *source_line = text
                .split('\n')
                .nth(location.line.saturating_sub(1))
                .map(|l| l.strip_suffix('\r').unwrap_or(l).to_owned())
                .filter(|l| !l.trim().is_empty());
        }
        self
    }

    /// The offending line of the Dockerfile, when the error points at one.
    pub fn source_line(&self) -> Option<&str> {
        match self {
            Error::Syntax { source_line, .. } | Error::BaseImage { source_line, .. } => {
                source_line.as_deref()
            }
        }
    }

    /// Where the error is.
    pub fn location(&self) -> &Location {
        match self {
            Error::Syntax { location, .. } | Error::BaseImage { location, .. } => location,
        }
    }

    /// The message without the location.
    pub fn message(&self) -> String {
        match self {
            Error::Syntax { message, .. } => message.clone(),
            Error::BaseImage { reference, .. } => format!("FROM {reference}"),
        }
    }
}
