//! A problem found in the rules, located as `file:line:col` for the rule author's editor.

use serde::{Deserialize, Serialize};
use std::fmt;

/// A problem located in the rules folder (`file:line:col: message`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Diagnostic {
    /// Path relative to the rules folder, with `/` separators.
    pub file: String,
    /// 1-based. The one convention for a problem with a file as a whole (unreadable, missing a
    /// required part, a script result of the wrong shape): 1:1, made by [`Diagnostic::file`].
    pub line: usize,
    /// 1-based; 0 when only the line is known (a script's engine reports no column).
    pub column: usize,
    pub message: String,
    /// For failing fixtures: what the fixture expected and what the rules produced.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expected: Option<Box<serde_json::Value>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actual: Option<Box<serde_json::Value>>,
}

impl Diagnostic {
    pub fn new(
        file: impl Into<String>,
        line: usize,
        column: usize,
        message: impl Into<String>,
    ) -> Self {
        Self {
            file: file.into(),
            line,
            column,
            message: message.into(),
            expected: None,
            actual: None,
        }
    }

    /// A problem with a whole file (missing, unreadable), reported at 1:1 so editors can jump to it.
    pub fn file(file: impl Into<String>, message: impl Into<String>) -> Self {
        Self::new(file, 1, 1, message)
    }

    /// Line and column of a byte offset in `source`.
    pub fn at_offset(
        file: impl Into<String>,
        source: &str,
        offset: usize,
        message: impl Into<String>,
    ) -> Self {
        let before = source.get(..offset).unwrap_or(source);
        let line = before.matches('\n').count() + 1;
        let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
        Self::new(file, line, column, message)
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}",
            self.file, self.line, self.column, self.message
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_become_line_and_column() {
        let d = Diagnostic::at_offset("a.toml", "ab\ncd\nef", 4, "bad");
        assert_eq!(d.to_string(), "a.toml:2:2: bad");
    }
}
