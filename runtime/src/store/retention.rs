//! Retention: what the background pruner removes, in bounded steps inside the writer's
//! transactions so that pruning never holds the writer for long.

use chrono::{DateTime, Utc};
use redb::{ReadableTable, ReadableTableMetadata, WriteTransaction};
use serde::Deserialize;

use super::records::{Envelope, ReleaseRecord};
use super::{
    decode_meta, encode, StoreError, DECISIONS, DECISIONS_BY_PERMIT, META, META_ACTIVE,
    META_DECISION_BYTES, META_PIN, RELEASES, RELEASE_SOURCES, RELOADS, SOURCE_FILES, SOURCE_TREES,
};

/// One pruning step. Each limit is optional; each table loses at most `batch` records per step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrunePlan {
    /// Decisions recorded before this instant go.
    pub decisions_before: Option<DateTime<Utc>>,
    /// The oldest decisions go while their stored size is above this many bytes.
    pub decisions_max_bytes: Option<u64>,
    /// Newest reload records kept.
    pub reloads_keep: Option<u64>,
    /// Newest stored releases kept, besides the active and the pinned one.
    pub releases_keep: Option<usize>,
    /// Most records removed per table in one step.
    pub batch: usize,
}

/// The fields retention needs from a decision, read without the (possibly large) rest.
#[derive(Deserialize)]
struct DecisionHead {
    at: DateTime<Utc>,
    permit: String,
}

fn head(bytes: &[u8]) -> Option<DecisionHead> {
    serde_json::from_slice::<Envelope<DecisionHead>>(bytes)
        .ok()
        .map(|e| e.data)
}

/// Stored size of the decision log in bytes (kept in `meta` and updated with every write).
pub(super) fn decision_bytes(txn: &WriteTransaction) -> Result<u64, StoreError> {
    let meta = txn.open_table(META)?;
    let value = meta.get(META_DECISION_BYTES)?;
    Ok(match value {
        Some(v) => decode_meta::<u64>(v.value())?,
        None => 0,
    })
}

pub(super) fn set_decision_bytes(txn: &WriteTransaction, bytes: u64) -> Result<(), StoreError> {
    txn.open_table(META)?
        .insert(META_DECISION_BYTES, encode(&bytes)?.as_slice())?;
    Ok(())
}

/// Applies one step of `plan`; returns how many records it removed (0: nothing left to do).
pub(super) fn prune(txn: &WriteTransaction, plan: &PrunePlan) -> Result<u64, StoreError> {
    let mut removed = prune_decisions(txn, plan)?;
    if let Some(keep) = plan.reloads_keep {
        let mut reloads = txn.open_table(RELOADS)?;
        let mut n = 0;
        while n < plan.batch && reloads.len()? > keep {
            if reloads.pop_first()?.is_none() {
                break;
            }
            n += 1;
        }
        removed += n as u64;
    }
    if let Some(keep) = plan.releases_keep {
        removed += prune_releases(txn, keep, plan.batch)?;
    }
    Ok(removed)
}

fn prune_decisions(txn: &WriteTransaction, plan: &PrunePlan) -> Result<u64, StoreError> {
    if plan.decisions_before.is_none() && plan.decisions_max_bytes.is_none() {
        return Ok(0);
    }
    let mut bytes = decision_bytes(txn)?;
    let mut decisions = txn.open_table(DECISIONS)?;
    let mut index = txn.open_table(DECISIONS_BY_PERMIT)?;
    let expired = |h: &Option<DecisionHead>| match (plan.decisions_before, h) {
        (Some(cutoff), Some(h)) => h.at < cutoff,
        _ => false,
    };
    let mut removed = 0u64;
    while removed < plan.batch as u64 {
        let (seq, len, first) = match decisions.first()? {
            Some((k, v)) => (k.value(), v.value().len() as u64, head(v.value())),
            None => break,
        };
        let over_bytes = plan.decisions_max_bytes.is_some_and(|max| bytes > max);
        // An unreadable record has no date of its own: it goes when the one after it is expired.
        let old = if first.is_some() {
            expired(&first)
        } else {
            let next = decisions.range(seq + 1..)?.next().transpose()?;
            next.is_some_and(|(_, v)| expired(&head(v.value())))
        };
        if !over_bytes && !old {
            break;
        }
        decisions.remove(seq)?;
        if let Some(h) = first {
            index.remove((h.permit.as_str(), seq))?;
        }
        bytes = bytes.saturating_sub(len);
        removed += 1;
    }
    drop((decisions, index));
    if removed > 0 {
        set_decision_bytes(txn, bytes)?;
    }
    Ok(removed)
}

fn prune_releases(txn: &WriteTransaction, keep: usize, batch: usize) -> Result<u64, StoreError> {
    let mut protected = Vec::new();
    {
        let meta = txn.open_table(META)?;
        if let Some(v) = meta.get(META_ACTIVE)? {
            protected.push(decode_meta::<String>(v.value())?);
        }
        let pin = meta.get(META_PIN)?;
        if let Some(v) = pin {
            protected.push(decode_meta::<super::records::PinRecord>(v.value())?.release);
        }
    }
    let mut releases = txn.open_table(RELEASES)?;
    let mut all: Vec<(String, Option<DateTime<Utc>>)> = Vec::new();
    for entry in releases.iter()? {
        let (k, v) = entry?;
        let at = serde_json::from_slice::<Envelope<ReleaseRecord>>(v.value())
            .ok()
            .map(|e| e.data.created_at);
        all.push((k.value().to_owned(), at));
    }
    // Newest first; a record that does not read sorts last and goes first.
    all.sort_by_key(|r| std::cmp::Reverse(r.1));
    let doomed: Vec<String> = all
        .into_iter()
        .skip(keep)
        .map(|(id, _)| id)
        .filter(|id| !protected.contains(id))
        .take(batch)
        .collect();
    let mut sources = txn.open_table(RELEASE_SOURCES)?;
    let mut passes = txn.open_table(super::RELEASE_PASSES)?;
    for id in &doomed {
        releases.remove(id.as_str())?;
        sources.remove(id.as_str())?;
        passes.remove(id.as_str())?;
    }
    drop(passes);
    if !doomed.is_empty() {
        drop(sources);
        remove_unused_files(txn)?;
        super::plugins::remove_plugins(txn, &doomed)?;
    }
    Ok(doomed.len() as u64)
}

/// Removes the folder trees no stored release lists any more, then the file bodies no stored
/// tree names. If a release's list or a tree does not read, nothing is removed: what it may name
/// must not go.
fn remove_unused_files(txn: &WriteTransaction) -> Result<(), StoreError> {
    type Listing = std::collections::BTreeMap<String, String>;
    let mut used_trees = std::collections::BTreeSet::new();
    for entry in txn.open_table(RELEASE_SOURCES)?.iter()? {
        let (_, v) = entry?;
        match serde_json::from_slice::<Envelope<Listing>>(v.value()) {
            Ok(manifest) => used_trees.extend(manifest.data.into_values()),
            Err(_) => return Ok(()),
        }
    }
    let mut trees = txn.open_table(SOURCE_TREES)?;
    let mut used_texts = std::collections::BTreeSet::new();
    let mut unused_trees = Vec::new();
    for entry in trees.iter()? {
        let (k, v) = entry?;
        if !used_trees.contains(k.value()) {
            unused_trees.push(k.value().to_owned());
            continue;
        }
        match serde_json::from_slice::<Envelope<Listing>>(v.value()) {
            Ok(tree) => used_texts.extend(tree.data.into_values()),
            Err(_) => return Ok(()),
        }
    }
    for key in unused_trees {
        trees.remove(key.as_str())?;
    }
    let mut files = txn.open_table(SOURCE_FILES)?;
    let mut unused = Vec::new();
    for entry in files.iter()? {
        let (k, _) = entry?;
        if !used_texts.contains(k.value()) {
            unused.push(k.value().to_owned());
        }
    }
    for key in unused {
        files.remove(key.as_str())?;
    }
    Ok(())
}
