-- Ferry controller state, SQLite dialect: the schema from before versioned migrations. Every
-- statement is idempotent, so a database created before versioning takes it harmlessly.
CREATE TABLE IF NOT EXISTS jobs (
    id              TEXT PRIMARY KEY,
    name            TEXT NOT NULL,
    state           TEXT NOT NULL,
    params          TEXT NOT NULL,
    idempotency_key TEXT UNIQUE,
    spec_hash       TEXT NOT NULL,
    created_at      INTEGER NOT NULL,
    finished_at     INTEGER,
    tasks_total     INTEGER NOT NULL,
    tasks_done      INTEGER NOT NULL DEFAULT 0,
    tasks_failed    INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS jobs_by_created ON jobs (created_at);

CREATE TABLE IF NOT EXISTS tasks (
    job_id           TEXT NOT NULL,
    task_id          TEXT NOT NULL,
    seq              INTEGER NOT NULL,
    queue            TEXT NOT NULL,
    labels           TEXT NOT NULL,
    spec             TEXT NOT NULL,
    state            TEXT NOT NULL,
    deps_remaining   INTEGER NOT NULL,
    ready_at         INTEGER NOT NULL,
    attempts         INTEGER NOT NULL DEFAULT 0,
    failures         INTEGER NOT NULL DEFAULT 0,
    max_attempts     INTEGER NOT NULL,
    initial_delay_ms INTEGER NOT NULL,
    max_delay_ms     INTEGER NOT NULL,
    PRIMARY KEY (job_id, task_id)
) WITHOUT ROWID;
-- Full rather than partial indexes: to use a partial index SQLite compares the query's bound
-- values with the index's WHERE, and must then re-prepare the statement at every new binding.
DROP INDEX IF EXISTS tasks_ready;
CREATE INDEX IF NOT EXISTS tasks_by_state ON tasks (state, queue, ready_at, job_id, seq);

CREATE TABLE IF NOT EXISTS task_deps (
    job_id     TEXT NOT NULL,
    depends_on TEXT NOT NULL,
    task_id    TEXT NOT NULL,
    PRIMARY KEY (job_id, depends_on, task_id)
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS attempts (
    job_id        TEXT NOT NULL,
    task_id       TEXT NOT NULL,
    number        INTEGER NOT NULL,
    agent         TEXT NOT NULL,
    state         TEXT NOT NULL,
    exit_code     INTEGER,
    error         TEXT NOT NULL DEFAULT '',
    started_at    INTEGER NOT NULL,
    finished_at   INTEGER,
    deadline_at   INTEGER,
    log_seq       INTEGER NOT NULL DEFAULT 0,
    log_bytes     INTEGER NOT NULL DEFAULT 0,
    log_truncated INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (job_id, task_id, number)
) WITHOUT ROWID;
DROP INDEX IF EXISTS attempts_running_by_agent;
DROP INDEX IF EXISTS attempts_deadline;
CREATE INDEX IF NOT EXISTS attempts_by_agent ON attempts (state, agent);
CREATE INDEX IF NOT EXISTS attempts_by_deadline ON attempts (state, deadline_at);

CREATE TABLE IF NOT EXISTS logs (
    job_id  TEXT NOT NULL,
    task_id TEXT NOT NULL,
    attempt INTEGER NOT NULL,
    seq     INTEGER NOT NULL,
    stderr  INTEGER NOT NULL,
    data    BLOB NOT NULL,
    PRIMARY KEY (job_id, task_id, attempt, seq)
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS agents (
    name          TEXT PRIMARY KEY,
    session       TEXT NOT NULL,
    state         TEXT NOT NULL,
    queues        TEXT NOT NULL,
    labels        TEXT NOT NULL,
    max_tasks     INTEGER NOT NULL,
    hostname      TEXT NOT NULL,
    version       TEXT NOT NULL,
    registered_at INTEGER NOT NULL
) WITHOUT ROWID;

-- Published outputs: the files of each task's successful attempt, written in the transaction
-- that records the success. Readers see an attempt's outputs only through these rows.
CREATE TABLE IF NOT EXISTS outputs (
    job_id     TEXT NOT NULL,
    task_id    TEXT NOT NULL,
    attempt    INTEGER NOT NULL,
    name       TEXT NOT NULL,
    size       INTEGER NOT NULL,
    sha256     TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (job_id, task_id, name)
) WITHOUT ROWID;

-- Jobs by name: watermarks are kept per job name.
CREATE INDEX IF NOT EXISTS jobs_by_name ON jobs (name, created_at);

-- What each sql task's successful attempt extracted (ExtractInfo as JSON), written in the
-- transaction that records the success.
CREATE TABLE IF NOT EXISTS extracts (
    job_id  TEXT NOT NULL,
    task_id TEXT NOT NULL,
    attempt INTEGER NOT NULL,
    info    TEXT NOT NULL,
    PRIMARY KEY (job_id, task_id)
) WITHOUT ROWID;

-- Backfill ranges submitted with a job: its incremental sql task extracts this range instead
-- of reading or moving the stored watermark.
CREATE TABLE IF NOT EXISTS backfills (
    job_id      TEXT NOT NULL,
    task_id     TEXT NOT NULL,
    from_value  TEXT,
    until_value TEXT NOT NULL,
    PRIMARY KEY (job_id, task_id)
) WITHOUT ROWID;

-- High watermarks of incremental sql tasks, per job name and task id. Moved only by the
-- transaction that records a (non-backfill) attempt's success, or by hand.
CREATE TABLE IF NOT EXISTS watermarks (
    job_name    TEXT NOT NULL,
    task_id     TEXT NOT NULL,
    column_name TEXT NOT NULL,
    value       TEXT NOT NULL,
    updated_at  INTEGER NOT NULL,
    job_id      TEXT,
    attempt     INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (job_name, task_id)
) WITHOUT ROWID;
