-- Agent liveness in the store, shared by every controller: the last sign of life of each
-- agent's session (`touch_agents`) and the host metrics of its latest heartbeat (HostMetrics
-- as JSON).
ALTER TABLE agents ADD COLUMN seen_at INTEGER NOT NULL DEFAULT 0;
ALTER TABLE agents ADD COLUMN metrics TEXT;
