//! Gap-free numbering under concurrency: 32 clients submit at once (PBG of two kinds and
//! sewa-tanah), then 32 permits are issued at once; every committed number is unique, the
//! sequences are exactly 1..=n per counter, each number has its format's exact shape with the
//! Roman month and year of the day it was assigned, and each is in its application and its event.

use std::collections::BTreeMap;

use chrono::NaiveDate;
use pintu_tests::applications::{
    advance_pbg, all_events, applicant, create_user, date_of, id_of, office_today, parse_number,
    pbg_data, sample_server, sewa_tanah_data, transition, Office,
};
use serde_json::{json, Value};

const SUBMITTERS: usize = 32;

/// What each submitter sends, in turn: (permit, kind).
const ROUNDS: [(&str, &str); 4] = [
    ("pbg", "baru"),
    ("pbg", "perpanjangan"),
    ("sewa-tanah", "baru"),
    ("pbg", "baru"),
];

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(120))
        .build()
        .unwrap()
}

/// The sequences of `numbers` (each with the date it may carry: the days around its request),
/// which must all have `format`'s shape; asserts they are exactly 1..=n.
fn assert_gap_free(what: &str, format: &str, numbers: &[(String, Vec<NaiveDate>)]) {
    let mut seqs: Vec<u64> = numbers
        .iter()
        .map(|(text, days)| {
            days.iter()
                .find_map(|d| parse_number(format, *d, text))
                .unwrap_or_else(|| panic!("{what}: `{text}` is not {format} on {days:?}"))
        })
        .collect();
    seqs.sort_unstable();
    let want: Vec<u64> = (1..=numbers.len() as u64).collect();
    assert_eq!(seqs, want, "{what}: not 1..={}", numbers.len());
    println!(
        "{what}: {} numbers, 1..={} with no gap, e.g. {}",
        numbers.len(),
        numbers.len(),
        numbers.first().map(|n| n.0.as_str()).unwrap_or("")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn numbers_are_unique_and_gap_free_under_32_concurrent_submitters() {
    let (_dir, s) = sample_server().await;
    let office = Office::create(&s).await;
    let fo = create_user(&s, "loket", &["front_office"], &["pbg", "sewa-tanah"]).await;

    // Each submitter on its own connection; all start together.
    let barrier = std::sync::Arc::new(tokio::sync::Barrier::new(SUBMITTERS));
    let tasks: Vec<_> = (0..SUBMITTERS)
        .map(|i| {
            let (s_base, token, barrier) = (s.base.clone(), fo.clone(), barrier.clone());
            tokio::spawn(async move {
                let http = client();
                let mut acked = Vec::new();
                barrier.wait().await;
                for (permit, kind) in ROUNDS {
                    let data = if permit == "pbg" { pbg_data() } else { sewa_tanah_data() };
                    let body = json!({"permit": permit, "kind": kind,
                        "applicant": applicant(&format!("Pemohon {i}"), Some("1872012505800001")), "data": data});
                    let r = http
                        .post(format!("{s_base}/v1/applications"))
                        .bearer_auth(&token)
                        .json(&body)
                        .send()
                        .await
                        .unwrap();
                    let (status, v) = pintu_tests::into_json(r).await;
                    assert_eq!(status, 201, "{permit} {kind} by submitter {i}: {v}");
                    acked.push(v);
                }
                acked
            })
        })
        .collect();
    let mut acked = Vec::new();
    for t in tasks {
        acked.extend(t.await.unwrap());
    }

    let registrations = |permit: &str| -> Vec<(String, Vec<NaiveDate>)> {
        acked
            .iter()
            .filter(|a| a["permit"] == permit)
            .map(|a| {
                (
                    a["registration_number"].as_str().unwrap().to_owned(),
                    vec![date_of(&a["submitted_on"])],
                )
            })
            .collect()
    };
    // Registration has no per-kind format in pbg: both kinds share one counter.
    assert_gap_free(
        "pbg registrations",
        "REG/PBG/{YYYY}/{NNNNN}",
        &registrations("pbg"),
    );
    assert_gap_free(
        "sewa-tanah registrations",
        "REG/ST/{YYYY}/{NNNNN}",
        &registrations("sewa-tanah"),
    );

    // 16 of each pbg kind go to penetapan, then 32 permits are issued at once.
    let baru: Vec<Value> = acked
        .iter()
        .filter(|a| a["permit"] == "pbg" && a["kind"] == "baru")
        .take(16)
        .cloned()
        .collect();
    let perpanjangan: Vec<Value> = acked
        .iter()
        .filter(|a| a["kind"] == "perpanjangan")
        .take(16)
        .cloned()
        .collect();
    let office = std::sync::Arc::new(office);
    let s = std::sync::Arc::new(s);
    let at_penetapan: Vec<Value> = futures_join(
        baru.iter()
            .chain(&perpanjangan)
            .map(|a| {
                let (s, office, a) = (s.clone(), office.clone(), a.clone());
                tokio::spawn(async move { advance_pbg(&s, &office, a, Some("penetapan")).await })
            })
            .collect(),
    )
    .await;
    let barrier = std::sync::Arc::new(tokio::sync::Barrier::new(at_penetapan.len()));
    let issued: Vec<(Value, Vec<NaiveDate>)> = futures_join(
        at_penetapan
            .into_iter()
            .map(|a| {
                let (s, office, barrier) = (s.clone(), office.clone(), barrier.clone());
                tokio::spawn(async move {
                    barrier.wait().await;
                    let before = office_today();
                    let (status, v) =
                        transition(&s, &office.kepala_dinas, &a, "advance", None).await;
                    let after = office_today();
                    assert_eq!(status, 200, "{v}");
                    (v, vec![before, after])
                })
            })
            .collect(),
    )
    .await;
    let permits = |kind: &str| -> Vec<(String, Vec<NaiveDate>)> {
        issued
            .iter()
            .filter(|(a, _)| a["kind"] == kind)
            .map(|(a, days)| {
                (
                    a["permit_number"].as_str().unwrap().to_owned(),
                    days.clone(),
                )
            })
            .collect()
    };
    assert_gap_free(
        "pbg permits (baru)",
        "503/{NNNN}/PBG/DPMPTSP/{MM}/{YYYY}",
        &permits("baru"),
    );
    assert_gap_free(
        "pbg permits (perpanjangan, its own format and counter)",
        "503/{NNNN}/PBG-P/DPMPTSP/{MM}/{YYYY}",
        &permits("perpanjangan"),
    );

    // Every acknowledged number is in its application and its event, exactly once.
    let events = all_events(&s).await;
    let mut in_events: BTreeMap<String, String> = BTreeMap::new();
    for e in &events {
        for key in ["registration_number", "permit_number"] {
            if let Some(n) = e["data"][key].as_str() {
                if e["type"] == "application.submitted" && key == "registration_number"
                    || e["type"] == "permit.issued" && key == "permit_number"
                {
                    let app = e["application"].as_str().unwrap().to_owned();
                    assert!(
                        in_events.insert(n.to_owned(), app).is_none(),
                        "{n} announced twice"
                    );
                }
            }
        }
    }
    let mut expected = BTreeMap::new();
    for a in &acked {
        expected.insert(
            a["registration_number"].as_str().unwrap().to_owned(),
            id_of(a),
        );
    }
    for (a, _) in &issued {
        expected.insert(a["permit_number"].as_str().unwrap().to_owned(), id_of(a));
        let (status, now) = s
            .get_as(
                &format!("/v1/applications/{}", id_of(a)),
                &office.front_office,
            )
            .await;
        assert_eq!(status, 200);
        assert_eq!(now["permit_number"], a["permit_number"]);
    }
    assert_eq!(
        in_events, expected,
        "numbers in events vs acknowledged numbers"
    );
}

/// Awaits every task, in order.
async fn futures_join<T>(tasks: Vec<tokio::task::JoinHandle<T>>) -> Vec<T> {
    let mut out = Vec::with_capacity(tasks.len());
    for t in tasks {
        out.push(t.await.unwrap());
    }
    out
}
