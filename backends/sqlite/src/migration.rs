//! The schema (`schema.sql`) and its version: creating it in a new file, migrating older
//! versions, and which versions a read-only open understands.

use rusqlite::Connection;

/// Version of `schema.sql`, kept in `PRAGMA user_version`.
pub(crate) const SCHEMA_VERSION: i64 = 3;

/// Versions a read (`open_read_only`, `backup`) understands: 2 differs only in a queue column
/// reads do not use; a writable open migrates it.
pub(crate) fn readable(version: i64) -> bool {
    version == SCHEMA_VERSION || version == 2
}

/// Check the schema version and create the schema in one write transaction: `BEGIN IMMEDIATE`
/// waits for other writers (busy handler), and no process sees a schema half created or a
/// version set before its tables. Returns the version found (0: a new file).
pub(crate) fn create_schema(conn: &Connection) -> rusqlite::Result<i64> {
    conn.execute_batch("BEGIN IMMEDIATE")?;
    let result = (|| {
        let mut found = user_version(conn)?;
        if found == 2 {
            migrate_from_2(conn)?;
            conn.pragma_update(None, "user_version", SCHEMA_VERSION)?;
            found = SCHEMA_VERSION;
        }
        if found == 0 || found == SCHEMA_VERSION {
            conn.execute_batch(include_str!("schema.sql"))?;
        }
        if found == 0 {
            conn.pragma_update(None, "user_version", SCHEMA_VERSION)?;
        }
        Ok(found)
    })();
    let end = match result {
        Ok(found) if found == 0 || found == SCHEMA_VERSION => "COMMIT",
        _ => "ROLLBACK",
    };
    match (result, conn.execute_batch(end)) {
        (Ok(found), Ok(())) => Ok(found),
        (Err(e), _) | (Ok(_), Err(e)) => {
            let _ = conn.execute_batch("ROLLBACK");
            Err(e)
        }
    }
}

pub(crate) fn user_version(conn: &Connection) -> rusqlite::Result<i64> {
    conn.pragma_query_value(None, "user_version", |r| r.get(0))
}

/// Version 2 -> 3: queue messages name their job (a column, not a `LIKE` on the body).
/// Runs inside `create_schema`'s transaction.
fn migrate_from_2(conn: &Connection) -> rusqlite::Result<()> {
    conn.execute_batch(
        "ALTER TABLE queue ADD COLUMN job_id TEXT;
         UPDATE queue SET job_id = json_extract(body, '$.job_id') WHERE json_valid(body);",
    )
}
