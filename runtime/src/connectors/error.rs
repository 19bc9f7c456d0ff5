//! Why one connector call failed. The message always names the connector, its version and the
//! cause (`connector `loop` 0.1.0: timed out after 200 ms`): it is what admins read in
//! `/admin/connectors`, the outbox and the 502 of an inbound request.

use thiserror::Error;

/// A failed call of one connector. The process and the other calls are unaffected.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("connector `{connector}` {version}: {cause}")]
pub struct CallError {
    pub connector: String,
    pub version: String,
    pub cause: CallFailure,
}

/// The cause of a [`CallError`].
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum CallFailure {
    /// The guest trapped (a panic, `unreachable`, an out-of-bounds access, ...).
    #[error("trapped: {0}")]
    Trap(String),
    /// The call ran past the manifest's `timeout_ms`.
    #[error("timed out after {ms} ms")]
    Timeout { ms: u64 },
    /// The guest tried to grow its memory past the manifest's `memory_mib`.
    #[error("ran out of memory (limit {mib} MiB)")]
    OutOfMemory { mib: u32 },
    /// A response body, an action or the number of actions exceeded the host's caps.
    #[error("output too large: {0}")]
    OutputTooLarge(String),
    /// The guest called `http-send` for a URL whose `scheme://host:port` its manifest does not
    /// allow; nothing was sent, and the call fails whatever the guest made of the refusal.
    #[error("tried to reach {0}, which is not in its [allow] hosts")]
    NotAllowed(String),
    /// The guest returned an error of its own (`handle-inbound` or `sync` answered `err`).
    #[error("returned an error: {0}")]
    Guest(String),
    /// The instance could not be created (e.g. the host's instance pool is exhausted).
    #[error("could not be instantiated: {0}")]
    Instantiate(String),
}

impl CallError {
    pub fn new(connector: &str, version: &str, cause: CallFailure) -> Self {
        Self {
            connector: connector.to_owned(),
            version: version.to_owned(),
            cause,
        }
    }

    /// A short stable name of the cause, for metrics and JSON: `trap`, `timeout`,
    /// `out_of_memory`, `output_too_large`, `not_allowed`, `guest`, `instantiate`.
    pub fn kind(&self) -> &'static str {
        match self.cause {
            CallFailure::Trap(_) => "trap",
            CallFailure::Timeout { .. } => "timeout",
            CallFailure::OutOfMemory { .. } => "out_of_memory",
            CallFailure::OutputTooLarge(_) => "output_too_large",
            CallFailure::NotAllowed(_) => "not_allowed",
            CallFailure::Guest(_) => "guest",
            CallFailure::Instantiate(_) => "instantiate",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_connector_version_and_cause() {
        let e = CallError::new("loop", "0.1.0", CallFailure::Timeout { ms: 200 });
        assert_eq!(
            e.to_string(),
            "connector `loop` 0.1.0: timed out after 200 ms"
        );
        assert_eq!(e.kind(), "timeout");
        let e = CallError::new(
            "forbidden-host",
            "0.2.0",
            CallFailure::NotAllowed("https://evil.example:443".into()),
        );
        assert_eq!(
            e.to_string(),
            "connector `forbidden-host` 0.2.0: tried to reach https://evil.example:443, which is not in its [allow] hosts"
        );
        let e = CallError::new("memory", "0.1.0", CallFailure::OutOfMemory { mib: 32 });
        assert_eq!(
            e.to_string(),
            "connector `memory` 0.1.0: ran out of memory (limit 32 MiB)"
        );
    }
}
