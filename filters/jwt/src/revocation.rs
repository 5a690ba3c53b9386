//! Revoked tokens: single tokens by `jti` (RFC 7519 section 4.1.7) and whole subjects by
//! `sub` with an `issued_before` instant ("log this user out everywhere": every token of the
//! subject whose `iat` is earlier is refused, later ones pass).
//!
//! [`Revocations`] is checked after the verified-token cache, so a token that was cached before
//! its revocation is refused too. The check is a lock-free read: the set is immutable and
//! swapped whole ([`arc_swap`]) when it changes, so a request pays one atomic load while
//! nothing is revoked and one or two hash lookups otherwise.
//!
//! Bounds: at most `capacity` entries (`[jwt] max_revocations`); an insert beyond that is
//! refused ([`RevocationError::Full`]) rather than growing or silently evicting a revocation.
//! Each entry carries `expires` (unix seconds), after which it may be forgotten: by then
//! every token it was meant for has expired too. Entries are identified by a digest of what
//! they revoke, so revoking the same `jti` (or `sub`) twice updates one entry.
//!
//! A subject revocation refuses a token without `iat` as well: such a token cannot show it
//! was issued after the revocation.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use arc_swap::ArcSwap;
use serde::{Deserialize, Serialize};

use crate::verify::Identity;

/// Longest `jti` or `sub` accepted in a revocation (claims are in tokens of at most 8 KiB).
pub const MAX_CLAIM_BYTES: usize = 1024;

/// One revocation, as the admin API and the shared store write it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Revocation {
    pub id: String,
    #[serde(flatten)]
    pub target: Revoked,
    /// Unix seconds after which the entry may be forgotten.
    pub expires: u64,
}

/// What a revocation refuses.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Revoked {
    /// Every token of `sub` with an `iat` before `issued_before` (unix seconds). Listed
    /// first: untagged deserialisation tries the variants in order.
    Subject { sub: String, issued_before: u64 },
    /// The token whose `jti` is this.
    Token { jti: String },
}

impl Revoked {
    /// The entry's id: a digest of what it revokes (`t-...` for a token, `s-...` for a
    /// subject), URL-safe and stable, so every replica names an entry alike.
    pub fn id(&self) -> String {
        let (kind, text) = match self {
            Revoked::Token { jti } => ("t", jti.as_str()),
            Revoked::Subject { sub, .. } => ("s", sub.as_str()),
        };
        let mut input = Vec::with_capacity(text.len() + 2);
        input.extend_from_slice(kind.as_bytes());
        input.push(0);
        input.extend_from_slice(text.as_bytes());
        let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &input);
        let hex: String = d.as_ref()[..12]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        format!("{kind}-{hex}")
    }
}

impl Revocation {
    /// A revocation of `target`, forgettable after `expires`. Refuses empty or oversized claims.
    pub fn new(target: Revoked, expires: u64) -> Result<Self, RevocationError> {
        let claim = match &target {
            Revoked::Token { jti } => jti,
            Revoked::Subject { sub, .. } => sub,
        };
        if claim.is_empty() || claim.len() > MAX_CLAIM_BYTES {
            return Err(RevocationError::Claim);
        }
        Ok(Revocation {
            id: target.id(),
            target,
            expires,
        })
    }

    /// Two revocations of the same thing combined: the later `issued_before` and `expires`
    /// win, so re-revoking never shortens a revocation.
    fn merged(mut self, old: &Revocation) -> Revocation {
        if let (
            Revoked::Subject { issued_before, .. },
            Revoked::Subject {
                issued_before: before,
                ..
            },
        ) = (&mut self.target, &old.target)
        {
            *issued_before = (*issued_before).max(*before);
        }
        self.expires = self.expires.max(old.expires);
        self
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RevocationError {
    #[error(
        "the revocation list is full ({0} entries); delete entries or raise [jwt] max_revocations"
    )]
    Full(usize),
    #[error("`jti` and `sub` must be 1 to 1024 bytes")]
    Claim,
}

/// An immutable set of revocations, indexed for the request-path check.
#[derive(Debug, Default)]
pub struct RevocationSet {
    entries: BTreeMap<String, Revocation>,
    tokens: HashSet<Arc<str>>,
    subjects: HashMap<Arc<str>, u64>,
}

impl RevocationSet {
    fn from_entries(entries: BTreeMap<String, Revocation>) -> Self {
        let mut tokens = HashSet::new();
        let mut subjects: HashMap<Arc<str>, u64> = HashMap::new();
        for r in entries.values() {
            match &r.target {
                Revoked::Token { jti } => {
                    tokens.insert(Arc::from(jti.as_str()));
                }
                Revoked::Subject { sub, issued_before } => {
                    let at = subjects.entry(Arc::from(sub.as_str())).or_default();
                    *at = (*at).max(*issued_before);
                }
            }
        }
        RevocationSet {
            entries,
            tokens,
            subjects,
        }
    }

    /// Whether a verified token with these claims is revoked.
    #[inline]
    pub fn revokes(&self, identity: &Identity) -> bool {
        if let Some(jti) = identity.jti.as_deref() {
            if self.tokens.contains(jti) {
                return true;
            }
        }
        match (identity.subject.as_deref(), self.subjects.is_empty()) {
            (Some(sub), false) => self
                .subjects
                .get(sub)
                .is_some_and(|before| identity.issued_at.is_none_or(|iat| iat < *before)),
            _ => false,
        }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Every entry, by id.
    pub fn iter(&self) -> impl Iterator<Item = &Revocation> {
        self.entries.values()
    }

    pub fn get(&self, id: &str) -> Option<&Revocation> {
        self.entries.get(id)
    }
}

/// The live revocation set of a process: read on every authenticated request, replaced whole
/// by the admin API (memory store) or by the sync from the shared store.
#[derive(Debug)]
pub struct Revocations {
    current: ArcSwap<RevocationSet>,
    capacity: AtomicUsize,
    /// Serialises local edits (each copies the set, changes it, swaps it in).
    writer: Mutex<()>,
}

impl Revocations {
    pub fn new(capacity: usize) -> Self {
        Revocations {
            current: ArcSwap::from_pointee(RevocationSet::default()),
            capacity: AtomicUsize::new(capacity.max(1)),
            writer: Mutex::new(()),
        }
    }

    /// The bound for inserts from now on (a reload may change it; entries held stay).
    pub fn set_capacity(&self, capacity: usize) {
        self.capacity.store(capacity.max(1), Ordering::Relaxed);
    }

    pub fn capacity(&self) -> usize {
        self.capacity.load(Ordering::Relaxed)
    }

    /// Whether `identity`'s token is revoked: one atomic load while the set is empty.
    #[inline]
    pub fn is_revoked(&self, identity: &Identity) -> bool {
        let set = self.current.load();
        !set.is_empty() && set.revokes(identity)
    }

    /// The current set, for listing.
    pub fn snapshot(&self) -> Arc<RevocationSet> {
        self.current.load_full()
    }

    pub fn len(&self) -> usize {
        self.current.load().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Adds `revocation` (merged with an entry for the same thing). Refused when the set is
    /// full and this is a new entry. Returns the entry as stored.
    pub fn insert(&self, revocation: Revocation) -> Result<Revocation, RevocationError> {
        self.edit(|entries, capacity| {
            let stored = match entries.get(&revocation.id) {
                Some(old) => revocation.merged(old),
                None if entries.len() >= capacity => return Err(RevocationError::Full(capacity)),
                None => revocation,
            };
            entries.insert(stored.id.clone(), stored.clone());
            Ok(stored)
        })
    }

    /// Removes the entry `id`; whether there was one.
    pub fn remove(&self, id: &str) -> bool {
        self.edit(|entries, _| Ok::<_, RevocationError>(entries.remove(id).is_some()))
            .unwrap_or(false)
    }

    /// Forgets entries whose `expires` is before `now` (unix seconds); how many went.
    pub fn prune(&self, now: u64) -> usize {
        if !self.current.load().iter().any(|r| r.expires < now) {
            return 0;
        }
        self.edit(|entries, _| {
            let before = entries.len();
            entries.retain(|_, r| r.expires >= now);
            Ok::<_, RevocationError>(before - entries.len())
        })
        .unwrap_or(0)
    }

    /// Replaces the whole set with `entries` (a full load from the shared store). At most
    /// `capacity` are kept (the store enforces the same bound; this guards the memory of a
    /// replica configured lower). Returns how many were dropped for the bound.
    pub fn replace(&self, entries: impl IntoIterator<Item = Revocation>) -> usize {
        let _guard = self.writer.lock().unwrap_or_else(PoisonError::into_inner);
        let capacity = self.capacity();
        let mut map = BTreeMap::new();
        let mut dropped = 0;
        for r in entries {
            if map.len() >= capacity && !map.contains_key(&r.id) {
                dropped += 1;
                continue;
            }
            map.insert(r.id.clone(), r);
        }
        self.current
            .store(Arc::new(RevocationSet::from_entries(map)));
        dropped
    }

    fn edit<T, E>(
        &self,
        change: impl FnOnce(&mut BTreeMap<String, Revocation>, usize) -> Result<T, E>,
    ) -> Result<T, E> {
        let _guard = self.writer.lock().unwrap_or_else(PoisonError::into_inner);
        let mut entries = self.current.load().entries.clone();
        let out = change(&mut entries, self.capacity())?;
        self.current
            .store(Arc::new(RevocationSet::from_entries(entries)));
        Ok(out)
    }
}

#[cfg(test)]
mod tests;
