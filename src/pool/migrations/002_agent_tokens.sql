-- 002_agent_tokens.sql: per-host agent credentials. An admin issues a token for a host name
-- (only its SHA-256 is stored); an agent holding it may register that host, heartbeat for it
-- and report the state of servers placed on it, nothing else. Issuing again replaces it.
CREATE TABLE host_tokens (
  id %ID%,
  host_name TEXT NOT NULL UNIQUE,
  token_hash TEXT NOT NULL UNIQUE,
  created_ms BIGINT NOT NULL
);

-- The secret the agent gave at its last registration; the controller presents it when it
-- asks the agent for a console log (the agent never learns the admin token).
ALTER TABLE hosts ADD COLUMN console_key TEXT NOT NULL DEFAULT '';
