//! End-to-end suites: the real `pintu` binary over real sockets, redb on disk.
#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "tests: failing loudly is the point"
)]

mod api;
mod app_crash;
mod applications;
mod auth;
mod cli;
mod concurrency;
mod connectors;
mod crash;
mod delivery;
mod diagnostics;
mod flows;
mod folder;
mod hostile;
mod http;
mod limits;
mod listing;
mod numbering;
mod oss_rba;
mod reload;
mod sample_rules;
mod scripts;
mod simbg;
mod storage;
mod users;
