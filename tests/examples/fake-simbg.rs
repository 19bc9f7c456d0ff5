//! The fake SIMBG, standalone, for the README tour.
//!
//! ```sh
//! cargo run -p pintu-tests --example fake-simbg -- [PORT] [EMAIL] [PASSWORD]
//! ```
//! Listens on `127.0.0.1:PORT` (default 18082, the sample `simbg` manifest's URL) with the
//! operator account `EMAIL` / `PASSWORD` (default `operator@metrokota.go.id` / `rahasia`) and the
//! sample applications of `tests/fixtures/simbg/applications.json`; `GET /_fake/received` shows
//! what it received.
#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    clippy::indexing_slicing,
    clippy::panic,
    reason = "a test tool fails loudly"
)]

use pintu_tests::fake_simbg::{sample_applications, FakeSimbg};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let port: u16 = args.first().and_then(|p| p.parse().ok()).unwrap_or(18082);
    let email = args
        .get(1)
        .cloned()
        .unwrap_or_else(|| "operator@metrokota.go.id".into());
    let password = args.get(2).cloned().unwrap_or_else(|| "rahasia".into());
    let simbg = FakeSimbg::start_on(port, &email, &password, sample_applications())
        .unwrap_or_else(|e| panic!("cannot listen on 127.0.0.1:{port}: {e}"));
    eprintln!(
        "fake SIMBG on {} (operator `{email}`); what it received: {}/_fake/received",
        simbg.origin(),
        simbg.origin()
    );
    simbg.join();
}
