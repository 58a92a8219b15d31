-- Schedule-to-start timeouts: how long a task may stay queued once ready (0: no limit), and why
-- a task failed without starting. The index holds only queued tasks with a limit, so that the
-- reaper finds those past it without reading the queue, and costs nothing to other tasks.
ALTER TABLE tasks ADD COLUMN start_timeout_ms INTEGER NOT NULL DEFAULT 0;
ALTER TABLE tasks ADD COLUMN reason TEXT NOT NULL DEFAULT '';
CREATE INDEX IF NOT EXISTS tasks_start_timeout ON tasks (ready_at)
    WHERE state = 'queued' AND start_timeout_ms > 0;
