//! The `EventLog` port: each job's events in the `events` table, in commit order (`seq`).

use async_trait::async_trait;
use engine::events::JobEvent;
use engine::ids::JobId;
use engine::ports::{EventLog, StoreError};
use rusqlite::params;

use crate::SqliteBackend;
use crate::codec::corrupt;
use crate::db::sql;

#[async_trait]
impl EventLog for SqliteBackend {
    async fn events_after(
        &self,
        job_id: &JobId,
        after: u64,
        limit: usize,
    ) -> Result<Vec<(u64, JobEvent)>, StoreError> {
        let job_id = job_id.clone();
        self.db
            .read(move |c| {
                let mut stmt = c
                    .prepare_cached("SELECT seq, doc FROM events WHERE job_id = ?1 AND seq > ?2 ORDER BY seq LIMIT ?3")
                    .map_err(sql)?;
                let rows = stmt
                    .query_map(params![job_id.as_str(), after as i64, limit as i64], |r| {
                        Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?))
                    })
                    .map_err(sql)?;
                let mut out = Vec::new();
                for row in rows {
                    let (seq, doc) = row.map_err(sql)?;
                    out.push((seq as u64, serde_json::from_str(&doc).map_err(|e| corrupt("event", e))?));
                }
                Ok(out)
            })
            .await
    }
}
