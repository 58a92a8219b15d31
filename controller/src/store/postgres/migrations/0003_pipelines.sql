-- Pipelines (decision 0016): named, versioned job templates and their runs, as in the SQLite
-- store. A deleted pipeline keeps its row (deleted_at set) and its versions, so that applying
-- its name again continues its version numbers. Applies and runs of one pipeline lock its row.
CREATE TABLE pipelines (
    name       TEXT COLLATE "C" PRIMARY KEY,
    version    BIGINT NOT NULL,
    paused     BOOLEAN NOT NULL DEFAULT FALSE,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    deleted_at BIGINT
);

CREATE TABLE pipeline_versions (
    pipeline   TEXT COLLATE "C" NOT NULL,
    version    BIGINT NOT NULL,
    hash       TEXT NOT NULL,
    template   TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (pipeline, version)
);

-- One row per run, written with its job. At most one run per (pipeline, scheduled time) and
-- per (pipeline, run key): a schedule's tick or a trigger's delivery made twice, by two
-- controllers or after a restart, starts one job.
CREATE TABLE pipeline_runs (
    job_id         TEXT COLLATE "C" PRIMARY KEY,
    pipeline       TEXT COLLATE "C" NOT NULL,
    version        BIGINT NOT NULL,
    scheduled_time BIGINT,
    run_key        TEXT,
    created_at     BIGINT NOT NULL
);
CREATE UNIQUE INDEX pipeline_runs_scheduled ON pipeline_runs (pipeline, scheduled_time)
    WHERE scheduled_time IS NOT NULL;
CREATE UNIQUE INDEX pipeline_runs_key ON pipeline_runs (pipeline, run_key)
    WHERE run_key IS NOT NULL;
CREATE INDEX pipeline_runs_by_pipeline ON pipeline_runs (pipeline, created_at);
