//! The replay cache: deliveries already accepted.

use std::collections::{HashSet, VecDeque};

use sha2::{Digest, Sha256};

/// Signatures already accepted, oldest first, bounded.
#[derive(Debug, Default)]
pub(super) struct ReplayCache {
    pub(super) seen: HashSet<Vec<u8>>,
    pub(super) order: VecDeque<Vec<u8>>,
}

impl ReplayCache {
    pub(super) fn remove(&mut self, id: &[u8]) {
        if self.seen.remove(id) {
            self.order.retain(|x| x.as_slice() != id);
        }
    }

    /// Records `sig`; `false` if it was already there.
    pub(super) fn insert(&mut self, sig: &[u8], capacity: usize) -> bool {
        if self.seen.contains(sig) {
            return false;
        }
        while self.order.len() >= capacity.max(1) {
            if let Some(old) = self.order.pop_front() {
                self.seen.remove(&old);
            }
        }
        self.seen.insert(sig.to_vec());
        self.order.push_back(sig.to_vec());
        true
    }
}

/// What identifies one delivery whatever secret signed it.
pub(super) fn delivery_id(timestamp: Option<i64>, body: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    if let Some(t) = timestamp {
        h.update(t.to_string().as_bytes());
    }
    h.update(b".");
    h.update(body);
    h.finalize().into()
}
