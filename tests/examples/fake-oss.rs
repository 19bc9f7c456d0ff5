//! The fake OSS RBA, standalone, for the README tour; and OSS's side of `receiveNIB`.
//!
//! ```sh
//! cargo run -p pintu-tests --example fake-oss -- serve [PORT] [USER_KEY]
//! cargo run -p pintu-tests --example fake-oss -- send-nib PINTU_URL USERNAME PASSWORD [FILE]
//! ```
//! `serve` listens on `127.0.0.1:PORT` (default 18081, the sample `oss-rba` manifest's URL),
//! accepting `USER_KEY` (default `kunci-uji`); `GET /_fake/received` and `GET /_fake/licenses`
//! show what it received. `send-nib` sends `FILE` (default `tests/fixtures/oss/receive_nib.json`)
//! to Pintu's `receiveNIB` with the `Token` OSS computes (SHA1 of username, password, NIB and the
//! office date, WIB) and prints the answer.
#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    clippy::indexing_slicing,
    clippy::panic,
    reason = "a test tool fails loudly"
)]

use pintu_tests::applications::office_today;
use pintu_tests::fake_oss::{
    nib_of, receive_nib_token, sample_receive_nib, send_receive_nib, FakeOss,
};

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |i: usize| args.get(i).cloned();
    match arg(0).as_deref() {
        Some("serve") | None => {
            let port: u16 = arg(1).and_then(|p| p.parse().ok()).unwrap_or(18081);
            let user_key = arg(2).unwrap_or_else(|| "kunci-uji".into());
            let oss = FakeOss::start_on(port, &user_key)
                .unwrap_or_else(|e| panic!("cannot listen on 127.0.0.1:{port}: {e}"));
            eprintln!(
                "fake OSS RBA on {} (user_key `{user_key}`); what it received: {}/_fake/received",
                oss.base_url(),
                oss.origin()
            );
            tokio::task::spawn_blocking(move || oss.join())
                .await
                .unwrap();
        }
        Some("send-nib") => {
            let (Some(pintu), Some(username), Some(password)) = (arg(1), arg(2), arg(3)) else {
                panic!("usage: fake-oss send-nib PINTU_URL USERNAME PASSWORD [FILE]");
            };
            let body = match arg(4) {
                Some(file) => serde_json::from_str(&std::fs::read_to_string(&file).unwrap())
                    .unwrap_or_else(|e| panic!("{file}: {e}")),
                None => sample_receive_nib(),
            };
            let token = receive_nib_token(&username, &password, &nib_of(&body), office_today());
            let (status, answer) = send_receive_nib(
                &reqwest::Client::new(),
                pintu.trim_end_matches('/'),
                &token,
                &body,
            )
            .await;
            println!("{status} {answer}");
        }
        Some(other) => panic!("unknown command `{other}`: serve or send-nib"),
    }
}
