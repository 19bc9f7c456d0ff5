//! `GET /v1/applications`: every filter (`permit`, `status`, `step`, `kind`,
//! `submitted_from`/`submitted_to`, `q`), newest first, and paging with `cursor` while other
//! clients insert: every application that existed when paging started appears exactly once.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use pintu_tests::applications::{
    advance_pbg, applicant, id_of, list_all, office_today, pbg_data, sample_server,
    sewa_tanah_data, submit_pbg, transition, Office,
};
use pintu_tests::Server;
use serde_json::{json, Value};

async fn create(s: &Server, token: &str, body: Value) -> Value {
    let (status, v) = s.post_as("/v1/applications", token, body).await;
    assert_eq!(status, 201, "{v}");
    v
}

fn pbg(name: &str, kind: &str) -> Value {
    json!({"permit": "pbg", "kind": kind, "applicant": applicant(name, Some("1872012505800001")), "data": pbg_data()})
}

/// The ids a query lists (all pages), in order.
async fn ids(s: &Server, token: &str, query: &str) -> Vec<String> {
    list_all(s, token, query)
        .await
        .into_iter()
        .flatten()
        .map(|a| id_of(&a))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_list_filters_and_shows_newest_first() {
    let (_dir, s) = sample_server().await;
    let office = Office::create(&s).await;
    let fo = &office.front_office;
    let today = office_today();
    let ten_days_ago = today - chrono::Days::new(10);

    // Created in this order (oldest first), so that newest first is the reverse whether it is
    // by creation or by submission date.
    let mut paper = pbg("Kertas Lama", "baru");
    paper["submitted_on"] = json!(ten_days_ago.to_string());
    let h = create(&s, fo, paper).await;
    let a = create(&s, fo, pbg("Budi Santoso", "baru")).await;
    let b = create(&s, fo, pbg("Siti Aminah", "baru")).await;
    let c = create(&s, fo, pbg("Rahmat Hidayat", "baru")).await;
    let d = create(&s, fo, pbg("Wayan Sudarsana", "perpanjangan")).await;
    let st = |name: &str| json!({"permit": "sewa-tanah", "applicant": applicant(name, Some("1872012505800001")), "data": sewa_tanah_data()});
    let e = create(&s, fo, st("PT Metro Niaga")).await;
    let f = create(&s, fo, st("Koperasi Tani Makmur")).await;
    let (_, i) = submit_pbg(&s, fo, "Yohanes Pardede").await;
    let i = advance_pbg(&s, &office, i, None).await;
    assert_eq!(i["status"], "completed");
    let g = create(
        &s,
        fo,
        json!({"permit": "pbg", "draft": true, "applicant": applicant("Draf Saja", None), "data": {}}),
    )
    .await;
    let a = advance_pbg(&s, &office, a, Some("entri_data")).await;
    let (status, b) = transition(&s, fo, &b, "reject", None).await;
    assert_eq!(status, 200, "{b}");
    let created = [&h, &a, &b, &c, &d, &e, &f, &i, &g];
    let name: BTreeMap<String, &str> = created
        .iter()
        .zip(["h", "a", "b", "c", "d", "e", "f", "i", "g"])
        .map(|(app, n)| (id_of(app), n))
        .collect();
    let names = |ids: Vec<String>| -> Vec<&str> {
        ids.iter()
            .map(|id| *name.get(id).unwrap_or_else(|| panic!("unknown id {id}")))
            .collect()
    };

    // Everything, newest first (drafts are listed too; where they sort is theirs).
    let all = names(ids(&s, fo, "").await);
    let dated: Vec<&str> = all.iter().copied().filter(|n| *n != "g").collect();
    assert_eq!(dated, ["i", "f", "e", "d", "c", "b", "a", "h"], "{all:?}");
    assert!(all.contains(&"g"), "{all:?}");
    // Small pages give the same list.
    assert_eq!(names(ids(&s, fo, "limit=2").await), all);

    let cases: Vec<(String, Vec<&str>)> = vec![
        ("permit=sewa-tanah".into(), vec!["f", "e"]),
        (
            "permit=pbg&status=in_progress".into(),
            vec!["d", "c", "a", "h"],
        ),
        ("status=draft".into(), vec!["g"]),
        ("status=rejected".into(), vec!["b"]),
        ("status=completed".into(), vec!["i"]),
        ("step=entri_data".into(), vec!["a"]),
        ("step=pendaftaran&permit=pbg".into(), vec!["d", "c", "h"]),
        ("kind=perpanjangan".into(), vec!["d"]),
        (
            format!(
                "submitted_from={}&submitted_to={}",
                ten_days_ago - chrono::Days::new(2),
                ten_days_ago + chrono::Days::new(2)
            ),
            vec!["h"],
        ),
        (
            format!("submitted_from={today}&permit=pbg&status=in_progress"),
            vec!["d", "c", "a"],
        ),
        (format!("submitted_to={ten_days_ago}"), vec!["h"]),
        ("q=santoso".into(), vec!["a"]),
        ("q=SITI%20AMINAH".into(), vec!["b"]),
        (
            format!(
                "q={}",
                pintu_tests::applications::encode(c["registration_number"].as_str().unwrap())
            ),
            vec!["c"],
        ),
        (
            format!(
                "q={}",
                pintu_tests::applications::encode(i["permit_number"].as_str().unwrap())
            ),
            vec!["i"],
        ),
        ("q=tidak-ada-yang-begini".into(), vec![]),
    ];
    for (query, want) in cases {
        let got = names(ids(&s, fo, &query).await);
        assert_eq!(set(&got), set(&want), "{query}");
        // In newest-first order (a draft has no place in these answers).
        assert_eq!(got, want, "{query}: order");
    }

    // What the list shows of an application is what GET shows.
    let pages = list_all(&s, fo, "step=entri_data").await;
    let (_, one) = s
        .get_as(&format!("/v1/applications/{}", id_of(&a)), fo)
        .await;
    assert_eq!(pages[0][0]["status"], one["status"]);
    assert_eq!(
        pages[0][0]["registration_number"],
        one["registration_number"]
    );
    assert_eq!(pages[0][0]["version"], one["version"]);

    // Bad parameters are refused naming what is wrong.
    for query in [
        "status=selesai",
        "kind=lama",
        "submitted_from=kemarin",
        "limit=0",
        "limit=banyak",
        "cursor=bukan-kursor",
    ] {
        let (status, v) = s.get_as(&format!("/v1/applications?{query}"), fo).await;
        assert!(status == 400 || status == 422, "{query}: {status} {v}");
        let param = query.split('=').next().unwrap();
        assert!(
            v["error"]["message"].as_str().unwrap_or("").contains(param),
            "{query}: the message does not name `{param}`: {v}"
        );
    }
}

const EXISTING: usize = 60;
const INSERTERS: usize = 4;
const PAGE: usize = 7;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paging_is_stable_while_other_clients_insert() {
    let (_dir, s) = sample_server().await;
    let office = Office::create(&s).await;
    let fo = office.front_office.clone();

    // The applications that exist when paging starts, oldest first; pbg and sewa-tanah mixed.
    let mut existing = Vec::new();
    for n in 0..EXISTING {
        let body = if n % 3 == 2 {
            json!({"permit": "sewa-tanah", "applicant": applicant(&format!("Lama {n}"), None), "data": sewa_tanah_data()})
        } else {
            pbg(&format!("Lama {n}"), "baru")
        };
        existing.push(create(&s, &fo, body).await);
    }
    let existing_pbg: Vec<String> = existing
        .iter()
        .filter(|a| a["permit"] == "pbg")
        .map(id_of)
        .collect();
    let existing: Vec<String> = existing.iter().map(id_of).collect();

    // Inserters keep adding pbg and sewa-tanah applications until paging is done.
    let stop = Arc::new(AtomicBool::new(false));
    let inserted = Arc::new(AtomicUsize::new(0));
    let tasks: Vec<_> = (0..INSERTERS)
        .map(|k| {
            let (base, token, stop, inserted) =
                (s.base.clone(), fo.clone(), stop.clone(), inserted.clone());
            tokio::spawn(async move {
                let http = reqwest::Client::new();
                let mut ids = Vec::new();
                let mut n = 0;
                while !stop.load(Ordering::SeqCst) {
                    let body = if (n + k) % 2 == 0 {
                        pbg(&format!("Baru {k}.{n}"), "baru")
                    } else {
                        json!({"permit": "sewa-tanah", "applicant": applicant(&format!("Baru {k}.{n}"), None), "data": sewa_tanah_data()})
                    };
                    let r = http
                        .post(format!("{base}/v1/applications"))
                        .bearer_auth(&token)
                        .json(&body)
                        .send()
                        .await
                        .unwrap();
                    let (status, v) = pintu_tests::into_json(r).await;
                    assert_eq!(status, 201, "{v}");
                    ids.push(id_of(&v));
                    inserted.fetch_add(1, Ordering::SeqCst);
                    n += 1;
                }
                ids
            })
        })
        .collect();

    // Page through everything and through pbg only; between pages, wait until more were
    // inserted, so that every page boundary sees concurrent inserts.
    let mut results = Vec::new();
    for filter in ["", "permit=pbg&"] {
        let mut seen = Vec::new();
        let mut cursor: Option<String> = None;
        let mut pages = 0;
        loop {
            let path = match &cursor {
                None => format!("/v1/applications?{filter}limit={PAGE}"),
                Some(c) => format!(
                    "/v1/applications?{filter}limit={PAGE}&cursor={}",
                    pintu_tests::applications::encode(c)
                ),
            };
            let (status, v) = s.get_as(&path, &fo).await;
            assert_eq!(status, 200, "{path}: {v}");
            let page = v["applications"].as_array().unwrap();
            assert!(page.len() <= PAGE, "{path}: {} on a page", page.len());
            seen.extend(page.iter().map(id_of));
            pages += 1;
            let Some(next) = v["next_cursor"].as_str() else {
                break;
            };
            cursor = Some(next.to_owned());
            let target = inserted.load(Ordering::SeqCst) + 1;
            let waiting = Instant::now();
            while inserted.load(Ordering::SeqCst) < target {
                assert!(
                    waiting.elapsed() < Duration::from_secs(60),
                    "no insert within 60 s"
                );
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        }
        results.push((filter, seen, pages));
    }
    stop.store(true, Ordering::SeqCst);
    let mut new_ids = BTreeSet::new();
    for t in tasks {
        new_ids.extend(t.await.unwrap());
    }
    println!(
        "{} inserted while paging; pages: {:?}",
        new_ids.len(),
        results.iter().map(|r| (r.0, r.2)).collect::<Vec<_>>()
    );
    assert!(new_ids.len() >= 2 * PAGE, "too few concurrent inserts");

    for (filter, seen, _) in results {
        let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
        for id in &seen {
            *counts.entry(id).or_default() += 1;
        }
        let doubled: Vec<_> = counts.iter().filter(|(_, n)| **n > 1).collect();
        assert!(doubled.is_empty(), "{filter}: listed twice: {doubled:?}");
        let want = if filter.is_empty() {
            &existing
        } else {
            &existing_pbg
        };
        // Every application that existed is listed, in newest-first order.
        let old: Vec<&String> = seen.iter().filter(|id| want.contains(id)).collect();
        let expected: Vec<&String> = want.iter().rev().collect();
        assert_eq!(old, expected, "{filter}: the existing applications");
        // Anything else listed is one of those inserted meanwhile.
        for id in &seen {
            assert!(
                want.contains(id) || new_ids.contains(id),
                "{filter}: listed {id}, which no one created"
            );
        }
    }
}

fn set<'a>(v: &[&'a str]) -> BTreeSet<&'a str> {
    v.iter().copied().collect()
}
