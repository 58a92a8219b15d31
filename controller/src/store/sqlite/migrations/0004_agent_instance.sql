-- Each agent's own id (kept in its work directory, stable across its restarts): while a name's
-- holder is alive, only a registration with the same id may take the name over. Empty for a
-- row written before it, or by an agent too old to send one.
ALTER TABLE agents ADD COLUMN instance TEXT NOT NULL DEFAULT '';
