-- Pipelines (decision 0016): named, versioned job templates and their runs. A deleted
-- pipeline keeps its row (deleted_at set) and its versions, so that applying its name again
-- continues its version numbers and a (pipeline, version) never names two templates.
CREATE TABLE pipelines (
    name       TEXT PRIMARY KEY,
    version    INTEGER NOT NULL,
    paused     INTEGER NOT NULL DEFAULT 0,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    deleted_at INTEGER
) WITHOUT ROWID;

CREATE TABLE pipeline_versions (
    pipeline   TEXT NOT NULL,
    version    INTEGER NOT NULL,
    hash       TEXT NOT NULL,
    template   TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (pipeline, version)
) WITHOUT ROWID;

-- One row per run, written with its job. At most one run per (pipeline, scheduled time) and
-- per (pipeline, run key): a schedule's tick or a trigger's delivery made twice starts one job.
CREATE TABLE pipeline_runs (
    job_id         TEXT PRIMARY KEY,
    pipeline       TEXT NOT NULL,
    version        INTEGER NOT NULL,
    scheduled_time INTEGER,
    run_key        TEXT,
    created_at     INTEGER NOT NULL
) WITHOUT ROWID;
CREATE UNIQUE INDEX pipeline_runs_scheduled ON pipeline_runs (pipeline, scheduled_time)
    WHERE scheduled_time IS NOT NULL;
CREATE UNIQUE INDEX pipeline_runs_key ON pipeline_runs (pipeline, run_key)
    WHERE run_key IS NOT NULL;
CREATE INDEX pipeline_runs_by_pipeline ON pipeline_runs (pipeline, created_at);
