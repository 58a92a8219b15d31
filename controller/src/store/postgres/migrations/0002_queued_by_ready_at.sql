-- The notifier's fallback asks every second whether a queued task became eligible lately,
-- whatever its queue: queued tasks by the time they become eligible.
CREATE INDEX tasks_queued_by_ready_at ON tasks (ready_at) WHERE state = 'queued';
