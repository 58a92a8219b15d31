-- Ferry controller state, PostgreSQL dialect: the tables of the SQLite store (millis as BIGINT,
-- JSON as TEXT, log data as BYTEA), with partial indexes so that rows of finished work never
-- slow a claim, and room left in hot tables' pages for HOT updates. Identifiers compare
-- bytewise (COLLATE "C"), as in SQLite, whatever the database's collation: listings come in
-- the same order from either backend.

CREATE TABLE jobs (
    id              TEXT COLLATE "C" PRIMARY KEY,
    name            TEXT COLLATE "C" NOT NULL,
    state           TEXT NOT NULL,
    params          TEXT NOT NULL,
    idempotency_key TEXT UNIQUE,
    spec_hash       TEXT NOT NULL,
    created_at      BIGINT NOT NULL,
    finished_at     BIGINT,
    tasks_total     BIGINT NOT NULL,
    tasks_done      BIGINT NOT NULL DEFAULT 0,
    tasks_failed    BIGINT NOT NULL DEFAULT 0
) WITH (fillfactor = 90);
CREATE INDEX jobs_by_created ON jobs (created_at);
-- Watermarks are kept per job name: the latest job of a name.
CREATE INDEX jobs_by_name ON jobs (name, created_at);

-- Updated at every claim, completion and retry: pages keep room for HOT updates (of the
-- columns that change no index: attempts, failures, deps_remaining).
CREATE TABLE tasks (
    job_id           TEXT COLLATE "C" NOT NULL,
    task_id          TEXT COLLATE "C" NOT NULL,
    seq              BIGINT NOT NULL,
    queue            TEXT COLLATE "C" NOT NULL,
    labels           TEXT NOT NULL,
    spec             TEXT NOT NULL,
    state            TEXT NOT NULL,
    deps_remaining   BIGINT NOT NULL,
    ready_at         BIGINT NOT NULL,
    attempts         BIGINT NOT NULL DEFAULT 0,
    failures         BIGINT NOT NULL DEFAULT 0,
    max_attempts     BIGINT NOT NULL,
    initial_delay_ms BIGINT NOT NULL,
    max_delay_ms     BIGINT NOT NULL,
    PRIMARY KEY (job_id, task_id)
) WITH (fillfactor = 80);
-- The claim's index: only queued tasks, in claim order.
CREATE INDEX tasks_queued ON tasks (queue, ready_at, job_id, seq) WHERE state = 'queued';
-- Queue statistics count queued and running tasks only.
CREATE INDEX tasks_running ON tasks (queue) WHERE state = 'running';

CREATE TABLE task_deps (
    job_id     TEXT COLLATE "C" NOT NULL,
    depends_on TEXT COLLATE "C" NOT NULL,
    task_id    TEXT COLLATE "C" NOT NULL,
    PRIMARY KEY (job_id, depends_on, task_id)
);

CREATE TABLE attempts (
    job_id        TEXT COLLATE "C" NOT NULL,
    task_id       TEXT COLLATE "C" NOT NULL,
    number        BIGINT NOT NULL,
    agent         TEXT COLLATE "C" NOT NULL,
    state         TEXT NOT NULL,
    exit_code     INTEGER,
    error         TEXT NOT NULL DEFAULT '',
    started_at    BIGINT NOT NULL,
    finished_at   BIGINT,
    deadline_at   BIGINT,
    log_seq       BIGINT NOT NULL DEFAULT 0,
    log_bytes     BIGINT NOT NULL DEFAULT 0,
    log_truncated BOOLEAN NOT NULL DEFAULT FALSE,
    PRIMARY KEY (job_id, task_id, number)
) WITH (fillfactor = 90);
-- Running attempts only: by agent (reconcile, death, listing) and by deadline (timeouts).
CREATE INDEX attempts_running_by_agent ON attempts (agent) WHERE state = 'running';
CREATE INDEX attempts_running_by_deadline ON attempts (deadline_at)
    WHERE state = 'running' AND deadline_at IS NOT NULL;

CREATE TABLE logs (
    job_id  TEXT COLLATE "C" NOT NULL,
    task_id TEXT COLLATE "C" NOT NULL,
    attempt BIGINT NOT NULL,
    seq     BIGINT NOT NULL,
    stderr  BOOLEAN NOT NULL,
    data    BYTEA NOT NULL,
    PRIMARY KEY (job_id, task_id, attempt, seq)
);

-- `seen_at` and `metrics` change at every batch of heartbeats and are in no index: HOT
-- updates, in pages with room for them.
CREATE TABLE agents (
    name          TEXT COLLATE "C" PRIMARY KEY,
    session       TEXT NOT NULL,
    state         TEXT NOT NULL,
    queues        TEXT NOT NULL,
    labels        TEXT NOT NULL,
    max_tasks     BIGINT NOT NULL,
    hostname      TEXT NOT NULL,
    version       TEXT NOT NULL,
    registered_at BIGINT NOT NULL,
    seen_at       BIGINT NOT NULL,
    metrics       TEXT
) WITH (fillfactor = 50);

-- Published outputs: the files of each task's successful attempt, written in the transaction
-- that records the success. Readers see an attempt's outputs only through these rows.
CREATE TABLE outputs (
    job_id     TEXT COLLATE "C" NOT NULL,
    task_id    TEXT COLLATE "C" NOT NULL,
    attempt    BIGINT NOT NULL,
    name       TEXT COLLATE "C" NOT NULL,
    size       BIGINT NOT NULL,
    sha256     TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (job_id, task_id, name)
);

-- What each sql task's successful attempt extracted (ExtractInfo as JSON).
CREATE TABLE extracts (
    job_id  TEXT COLLATE "C" NOT NULL,
    task_id TEXT COLLATE "C" NOT NULL,
    attempt BIGINT NOT NULL,
    info    TEXT NOT NULL,
    PRIMARY KEY (job_id, task_id)
);

-- Backfill ranges submitted with a job.
CREATE TABLE backfills (
    job_id      TEXT COLLATE "C" NOT NULL,
    task_id     TEXT COLLATE "C" NOT NULL,
    from_value  TEXT,
    until_value TEXT NOT NULL,
    PRIMARY KEY (job_id, task_id)
);

-- High watermarks of incremental sql tasks, per job name and task id.
CREATE TABLE watermarks (
    job_name    TEXT COLLATE "C" NOT NULL,
    task_id     TEXT COLLATE "C" NOT NULL,
    column_name TEXT NOT NULL,
    value       TEXT NOT NULL,
    updated_at  BIGINT NOT NULL,
    job_id      TEXT COLLATE "C",
    attempt     BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (job_name, task_id)
);

-- Settings the controllers of one store agree on (the identity of the shared data directory),
-- each bound once by the first controller.
CREATE TABLE settings (
    key   TEXT COLLATE "C" PRIMARY KEY,
    value TEXT NOT NULL
);
