//! Filters in the replica's own memory: for a replica that serves alone (behind a balancer, each replica
//! would know only the filters created through it; use [`super::dynamodb::DynamoFilters`] there).

use std::{collections::HashMap, sync::Mutex};

use super::{unix_now, Cursor, FilterStore, FilterStoreError, StoredFilter};

#[derive(Default)]
pub struct MemoryFilters {
    filters: Mutex<HashMap<String, StoredFilter>>,
}

impl MemoryFilters {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, StoredFilter>> {
        self.filters.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[async_trait::async_trait]
impl FilterStore for MemoryFilters {
    async fn insert(&self, id: &str, filter: &StoredFilter) -> Result<(), FilterStoreError> {
        let mut filters = self.lock();
        // Expired filters go when new ones come, so that abandoned ones do not pile up.
        let now = unix_now();
        filters.retain(|_, f| !f.expired(now));
        filters.insert(id.to_string(), filter.clone());
        Ok(())
    }

    async fn get(&self, id: &str) -> Result<Option<StoredFilter>, FilterStoreError> {
        Ok(self.lock().get(id).cloned())
    }

    async fn advance(
        &self,
        id: &str,
        from: &Cursor,
        to: &Cursor,
        expires_at: u64,
    ) -> Result<bool, FilterStoreError> {
        let mut filters = self.lock();
        match filters.get_mut(id) {
            Some(f) if f.cursor == *from => {
                f.cursor = *to;
                f.expires_at = expires_at;
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    async fn remove(&self, id: &str) -> Result<bool, FilterStoreError> {
        Ok(self.lock().remove(id).is_some())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::filters::Kind;
    use alloy_primitives::B256;

    fn cursor(n: u64) -> Cursor {
        Cursor { number: n, hash: B256::with_last_byte(n as u8), sequence: n }
    }

    #[tokio::test]
    async fn only_the_poll_that_saw_the_cursor_moves_it() {
        let store = MemoryFilters::default();
        let f =
            StoredFilter { kind: Kind::Blocks, cluster: "c".into(), cursor: cursor(1), expires_at: u64::MAX };
        store.insert("0x1", &f).await.unwrap();
        assert!(store.advance("0x1", &cursor(1), &cursor(2), u64::MAX).await.unwrap());
        // A second poll that read the old cursor loses.
        assert!(!store.advance("0x1", &cursor(1), &cursor(3), u64::MAX).await.unwrap());
        assert_eq!(store.get("0x1").await.unwrap().unwrap().cursor, cursor(2));
        assert!(!store.advance("0x2", &cursor(1), &cursor(2), u64::MAX).await.unwrap());
        assert!(store.remove("0x1").await.unwrap());
        assert!(!store.remove("0x1").await.unwrap());
        assert!(store.get("0x1").await.unwrap().is_none());
    }
}
