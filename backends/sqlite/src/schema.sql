-- Tessera embedded backend schema (version 3). Statuses are stored as their string spelling.
-- Tasks and edges refer to their job by the job's integer `key`, not by its 64-character ID:
-- the task indexes stay small, which is most of the write cost of a task.
CREATE TABLE IF NOT EXISTS jobs (
    key         INTEGER PRIMARY KEY,
    id          TEXT NOT NULL UNIQUE,
    status      TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    finished_at INTEGER,
    revision    INTEGER NOT NULL,
    doc         TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS jobs_by_created ON jobs (created_at DESC, id);
CREATE INDEX IF NOT EXISTS jobs_by_status ON jobs (status, finished_at);

CREATE TABLE IF NOT EXISTS tasks (
    job         INTEGER NOT NULL,
    id          TEXT NOT NULL,
    status      TEXT NOT NULL,
    grp         TEXT,
    child_group TEXT,
    updated_at  INTEGER NOT NULL,
    revision    INTEGER NOT NULL,
    progress    TEXT,
    doc         TEXT NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS tasks_by_id ON tasks (job, id);
CREATE INDEX IF NOT EXISTS tasks_by_status ON tasks (job, status);
CREATE INDEX IF NOT EXISTS tasks_by_group ON tasks (job, grp, status) WHERE grp IS NOT NULL;
CREATE INDEX IF NOT EXISTS tasks_feeding ON tasks (job, child_group, status) WHERE child_group IS NOT NULL;
CREATE INDEX IF NOT EXISTS tasks_in_flight ON tasks (status, updated_at)
    WHERE status IN ('QUEUED', 'RETRY_WAIT', 'RUNNING');

CREATE TABLE IF NOT EXISTS task_edges (
    job     INTEGER NOT NULL,
    dep_id  TEXT NOT NULL,
    task_id TEXT NOT NULL,
    PRIMARY KEY (job, dep_id, task_id)
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS queue (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    queue         TEXT NOT NULL,
    body          TEXT NOT NULL,
    visible_at    INTEGER NOT NULL,
    dequeue_count INTEGER NOT NULL DEFAULT 0,
    receipt       INTEGER NOT NULL DEFAULT 0,
    inserted_at   INTEGER NOT NULL,
    -- The job whose task(s) the message carries (NULL for a malformed body).
    job_id        TEXT
);
CREATE INDEX IF NOT EXISTS queue_visible ON queue (queue, visible_at, id);
CREATE INDEX IF NOT EXISTS queue_by_job ON queue (job_id) WHERE job_id IS NOT NULL;

CREATE TABLE IF NOT EXISTS events (
    seq    INTEGER PRIMARY KEY AUTOINCREMENT,
    job_id TEXT NOT NULL,
    doc    TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS events_by_job ON events (job_id, seq);
