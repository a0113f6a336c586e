-- 001_init.sql: the pool's schema. %ID% is the backend's auto-increment key type.
-- Times are wall-clock milliseconds written by the controller. Resource units: vCPUs, MiB, GiB.
CREATE TABLE pool_meta (
  k TEXT PRIMARY KEY,
  v BIGINT NOT NULL
);
INSERT INTO pool_meta (k, v) VALUES ('host_seq', 0);

CREATE TABLE tenants (
  id %ID%,
  name TEXT NOT NULL UNIQUE,
  token_hash TEXT NOT NULL UNIQUE,
  quota_instances BIGINT NOT NULL,
  quota_vcpus BIGINT NOT NULL,
  quota_ram_mb BIGINT NOT NULL,
  used_instances BIGINT NOT NULL DEFAULT 0,
  used_vcpus BIGINT NOT NULL DEFAULT 0,
  used_ram_mb BIGINT NOT NULL DEFAULT 0,
  created_ms BIGINT NOT NULL
);

-- One row per host with its inventory per resource class (total, reserved, allocation ratio,
-- used). generation is bumped by every claim and release (the CAS column); heartbeat_ms lives
-- apart from it so heartbeats never conflict with claims.
CREATE TABLE hosts (
  id %ID%,
  name TEXT NOT NULL UNIQUE,
  url TEXT NOT NULL,
  az TEXT NOT NULL DEFAULT '',
  archs BIGINT NOT NULL,
  drivers BIGINT NOT NULL,
  isolated_tenant BIGINT NOT NULL DEFAULT 0,
  enabled INTEGER NOT NULL DEFAULT 1,
  vcpu_total BIGINT NOT NULL, vcpu_reserved BIGINT NOT NULL, vcpu_ratio DOUBLE PRECISION NOT NULL,
  vcpu_used BIGINT NOT NULL DEFAULT 0,
  ram_total BIGINT NOT NULL, ram_reserved BIGINT NOT NULL, ram_ratio DOUBLE PRECISION NOT NULL,
  ram_used BIGINT NOT NULL DEFAULT 0,
  disk_total BIGINT NOT NULL, disk_reserved BIGINT NOT NULL, disk_ratio DOUBLE PRECISION NOT NULL,
  disk_used BIGINT NOT NULL DEFAULT 0,
  instances BIGINT NOT NULL DEFAULT 0,
  builds BIGINT NOT NULL DEFAULT 0,
  recent_failures BIGINT NOT NULL DEFAULT 0,
  generation BIGINT NOT NULL DEFAULT 1,
  seq BIGINT NOT NULL DEFAULT 0,
  heartbeat_ms BIGINT NOT NULL DEFAULT 0,
  created_ms BIGINT NOT NULL
);
CREATE INDEX hosts_seq ON hosts (seq);
CREATE INDEX hosts_heartbeat ON hosts (heartbeat_ms);

CREATE TABLE flavors (
  id %ID%,
  name TEXT NOT NULL UNIQUE,
  vcpus BIGINT NOT NULL,
  ram_mb BIGINT NOT NULL,
  disk_gb BIGINT NOT NULL,
  created_ms BIGINT NOT NULL
);

CREATE TABLE images (
  id %ID%,
  name TEXT NOT NULL UNIQUE,
  arch TEXT NOT NULL,
  hypervisor TEXT NOT NULL DEFAULT '',
  min_ram_mb BIGINT NOT NULL DEFAULT 0,
  kernel TEXT NOT NULL DEFAULT '',
  initrd TEXT NOT NULL DEFAULT '',
  append TEXT NOT NULL DEFAULT '',
  created_ms BIGINT NOT NULL
);

CREATE TABLE server_groups (
  id %ID%,
  tenant_id BIGINT NOT NULL,
  name TEXT NOT NULL,
  policy TEXT NOT NULL,
  generation BIGINT NOT NULL DEFAULT 1,
  created_ms BIGINT NOT NULL,
  UNIQUE (tenant_id, name)
);

CREATE TABLE vms (
  id %ID%,
  tenant_id BIGINT NOT NULL,
  name TEXT NOT NULL,
  flavor_id BIGINT NOT NULL,
  image_id BIGINT NOT NULL,
  group_id BIGINT NOT NULL DEFAULT 0,
  host_id BIGINT NOT NULL,
  vcpus BIGINT NOT NULL,
  ram_mb BIGINT NOT NULL,
  disk_gb BIGINT NOT NULL,
  state TEXT NOT NULL,
  fault TEXT NOT NULL DEFAULT '',
  attempts BIGINT NOT NULL DEFAULT 1,
  alternates TEXT NOT NULL DEFAULT '',
  request_id TEXT,
  created_ms BIGINT NOT NULL,
  started_ms BIGINT NOT NULL DEFAULT 0,
  deleted_ms BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX vms_tenant ON vms (tenant_id, state);
CREATE INDEX vms_host ON vms (host_id, state);
CREATE INDEX vms_group ON vms (group_id, state);
CREATE UNIQUE INDEX vms_request ON vms (tenant_id, request_id);

-- One row per finished VM run (written when its claim is released).
CREATE TABLE usage_records (
  id %ID%,
  tenant_id BIGINT NOT NULL,
  vm_id BIGINT NOT NULL,
  vcpus BIGINT NOT NULL,
  ram_mb BIGINT NOT NULL,
  disk_gb BIGINT NOT NULL,
  start_ms BIGINT NOT NULL,
  end_ms BIGINT NOT NULL
);
CREATE INDEX usage_tenant ON usage_records (tenant_id, end_ms);
