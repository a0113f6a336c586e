/*
 * routes.c - the control API's routes: strict JSON validation, then a control_* call.
 *
 * Every body is checked against a field table before anything happens: unknown fields, wrong
 * types and missing required fields are 400 with a sentence naming the field.
 */
#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "devices/backend/net.h"
#include "kumo/api.h"
#include "kumo/base.h"
#include "kumo/control.h"

enum ftype { F_STRING, F_INT, F_BOOL, F_STRINGS };

struct field {
	const char *name;
	enum ftype type;
	bool required;
};

static const char *type_name(enum ftype t)
{
	switch (t) {
	case F_STRING: return "a string";
	case F_INT: return "an integer";
	case F_BOOL: return "true or false";
	default: return "an array of strings";
	}
}

static bool type_ok(json_t *v, enum ftype t)
{
	switch (t) {
	case F_STRING: return json_is_string(v);
	case F_INT: return json_is_integer(v);
	case F_BOOL: return json_is_boolean(v);
	default:
		if (!json_is_array(v))
			return false;
		for (size_t i = 0; i < json_array_size(v); i++)
			if (!json_is_string(json_array_get(v, i)))
				return false;
		return true;
	}
}

/* 0, or -EINVAL with err_set() naming the offending field. */
static int validate(json_t *obj, const struct field *fields, size_t n, const char *what)
{
	const char *key;
	json_t *v;

	if (!json_is_object(obj)) {
		err_set("%s: the body must be a JSON object", what);
		return -EINVAL;
	}
	json_object_foreach(obj, key, v) {
		size_t i;

		for (i = 0; i < n && strcmp(fields[i].name, key); i++)
			;
		if (i == n) {
			err_set("%s: unknown field '%s'", what, key);
			return -EINVAL;
		}
		if (!type_ok(v, fields[i].type)) {
			err_set("%s: field '%s' must be %s", what, key, type_name(fields[i].type));
			return -EINVAL;
		}
	}
	for (size_t i = 0; i < n; i++)
		if (fields[i].required && !json_object_get(obj, fields[i].name)) {
			err_set("%s: field '%s' is required", what, fields[i].name);
			return -EINVAL;
		}
	return 0;
}

static const char *opt_str(json_t *o, const char *k)
{
	return json_string_value(json_object_get(o, k));
}

static bool opt_bool(json_t *o, const char *k)
{
	return json_is_true(json_object_get(o, k));
}

/* ---- configuration bodies (shared with --config) ---- */

static const struct field machine_fields[] = {
	{"vcpu_count", F_INT, true},
	{"mem_size_mib", F_INT, true},
	{"agent", F_STRING, false}, /* "auto" (default), "on", "off": the guest agent channel */
	{"huge_pages", F_STRING, false}, /* "none" (default), "thp": madvise guest RAM for THP */
};

static int do_machine(struct control *ctl, json_t *b)
{
	json_int_t vcpus, mib;
	int ret = validate(b, machine_fields, ARRAY_SIZE(machine_fields), "machine-config");
	int agent = VM_AGENT_AUTO, huge = VM_HUGE_PAGES_NONE;

	if (ret)
		return ret;
	/* Without the field the mode stays as it was (kumo run --agent, an earlier PUT). */
	if (json_object_get(b, "agent")) {
		agent = control_agent_mode(opt_str(b, "agent"));
		if (agent < 0) {
			err_set("machine-config: agent '%s' is not auto, on or off",
				opt_str(b, "agent"));
			return -EINVAL;
		}
	}
	/* The same for huge pages (kumo run --hugepages). */
	if (json_object_get(b, "huge_pages")) {
		huge = control_huge_pages_mode(opt_str(b, "huge_pages"));
		if (huge < 0) {
			err_set("machine-config: huge_pages '%s' is not none or thp",
				opt_str(b, "huge_pages"));
			return -EINVAL;
		}
	}
	vcpus = json_integer_value(json_object_get(b, "vcpu_count"));
	mib = json_integer_value(json_object_get(b, "mem_size_mib"));
	if (vcpus < 1 || vcpus > VM_MAX_CPUS) {
		err_set("machine-config: vcpu_count %lld is out of range: kumo runs 1 to %d vCPUs",
			(long long)vcpus, VM_MAX_CPUS);
		return -EINVAL;
	}
	if (mib < 16 || mib > (json_int_t)(VM_MAX_MEM >> 20)) {
		err_set("machine-config: mem_size_mib %lld is out of range: use 16 to %llu",
			(long long)mib, VM_MAX_MEM >> 20);
		return -EINVAL;
	}
	ret = control_set_machine(ctl, (unsigned)vcpus, (uint64_t)mib << 20);
	if (!ret && json_object_get(b, "agent"))
		ret = control_set_agent(ctl, agent);
	if (!ret && json_object_get(b, "huge_pages"))
		ret = control_set_huge_pages(ctl, huge);
	return ret;
}

static const struct field boot_fields[] = {
	{"kernel_image_path", F_STRING, false},
	{"initrd_path", F_STRING, false},
	{"boot_args", F_STRING, false},
	{"firmware_path", F_STRING, false},
};

static int do_boot(struct control *ctl, json_t *b)
{
	int ret = validate(b, boot_fields, ARRAY_SIZE(boot_fields), "boot-source");

	if (ret)
		return ret;
	return control_set_boot(ctl, opt_str(b, "kernel_image_path"), opt_str(b, "initrd_path"),
				opt_str(b, "boot_args"), opt_str(b, "firmware_path"));
}

static const struct field drive_fields[] = {
	{"drive_id", F_STRING, false},
	{"path_on_host", F_STRING, true},
	{"is_read_only", F_BOOL, false},
	{"serial", F_STRING, false},
	{"direct", F_BOOL, false},
	{"discard", F_BOOL, false},
};

static int do_drive(struct control *ctl, const char *id, json_t *b)
{
	struct vm_disk d = {0};
	const char *bid;
	int ret = validate(b, drive_fields, ARRAY_SIZE(drive_fields), "drive");

	if (ret)
		return ret;
	bid = opt_str(b, "drive_id");
	if (!id)
		id = bid;
	if (!id) {
		err_set("drive: field 'drive_id' is required");
		return -EINVAL;
	}
	if (bid && strcmp(bid, id)) {
		err_set("drive: drive_id '%s' does not match the path's '%s'", bid, id);
		return -EINVAL;
	}
	d.path = opt_str(b, "path_on_host");
	d.serial = opt_str(b, "serial");
	d.readonly = opt_bool(b, "is_read_only");
	d.direct = opt_bool(b, "direct");
	d.discard = opt_bool(b, "discard");
	return control_set_drive(ctl, id, &d);
}

static const struct field net_fields[] = {
	{"iface_id", F_STRING, false},
	{"backend", F_STRING, true},
	{"guest_mac", F_STRING, false},
	{"host_dev_name", F_STRING, false},
	{"hostfwd", F_STRINGS, false},
};

static int do_net(struct control *ctl, const char *id, json_t *b)
{
	char spec[1024];
	size_t n = 0;
	const char *bid, *backend, *mac, *dev;
	json_t *fwd;
	struct net_spec parsed;
	int ret = validate(b, net_fields, ARRAY_SIZE(net_fields), "network-interface");

	if (ret)
		return ret;
	bid = opt_str(b, "iface_id");
	if (!id)
		id = bid;
	if (!id) {
		err_set("network-interface: field 'iface_id' is required");
		return -EINVAL;
	}
	if (bid && strcmp(bid, id)) {
		err_set("network-interface: iface_id '%s' does not match the path's '%s'", bid, id);
		return -EINVAL;
	}
	backend = opt_str(b, "backend");
	mac = opt_str(b, "guest_mac");
	dev = opt_str(b, "host_dev_name");
	fwd = json_object_get(b, "hostfwd");
	if (strcmp(backend, "user") && strcmp(backend, "tap")) {
		err_set("network-interface: backend '%s' is not user or tap", backend);
		return -EINVAL;
	}
	if (!strcmp(backend, "tap") != !!dev) {
		err_set("network-interface: host_dev_name is %s with backend %s",
			dev ? "not allowed" : "required", backend);
		return -EINVAL;
	}
	if (fwd && strcmp(backend, "user")) {
		err_set("network-interface: hostfwd needs backend user");
		return -EINVAL;
	}
	n = (size_t)snprintf(spec, sizeof(spec), "%s", backend);
	if (dev)
		n += (size_t)snprintf(spec + n, sizeof(spec) - n, ",ifname=%s", dev);
	for (size_t i = 0; fwd && i < json_array_size(fwd) && n < sizeof(spec); i++)
		n += (size_t)snprintf(spec + n, sizeof(spec) - n, ",hostfwd=%s",
				      json_string_value(json_array_get(fwd, i)));
	if (mac && n < sizeof(spec))
		n += (size_t)snprintf(spec + n, sizeof(spec) - n, ",mac=%s", mac);
	if (n >= sizeof(spec) || strchr(dev ? dev : "", ',') || strchr(mac ? mac : "", ',')) {
		err_set("network-interface: values are too long or contain ','");
		return -EINVAL;
	}
	if (net_spec_parse(spec, &parsed)) {
		err_set("network-interface: %s", err_get());
		return -EINVAL;
	}
	return control_set_net(ctl, id, spec);
}

/* ---- responses ---- */

static void respond_json(struct api_response *r, int status, json_t *j)
{
	r->status = status;
	r->body = json_dumps(j, JSON_COMPACT);
	r->type = "application/json";
	json_decref(j);
	if (!r->body) {
		r->status = 500;
		r->type = NULL;
	}
}

static void respond_error(struct api_response *r, int status, const char *msg)
{
	respond_json(r, status, json_pack("{s:s}", "error", msg));
}

/* 204 on success, else the error sentence with control_status(). */
static void respond_result(struct api_response *r, int ret)
{
	if (!ret) {
		r->status = 204;
		return;
	}
	respond_error(r, control_status(ret), *err_get() ? err_get() : strerror(-ret));
}

/* ---- routes ---- */

static const struct field state_fields[] = {{"state", F_STRING, true}};
static const struct field action_fields[] = {
	{"action", F_STRING, true},
	{"grace_ms", F_INT, false},
};
static const struct field snapshot_fields[] = {
	{"snapshot_path", F_STRING, true},
	{"snapshot_type", F_STRING, false}, /* create only: "full" (default) or "diff" */
	{"compress", F_BOOL, false},        /* create only: zstd */
};

static int do_patch_vm(struct control *ctl, json_t *b)
{
	const char *s;
	int ret = validate(b, state_fields, ARRAY_SIZE(state_fields), "PATCH /vm");

	if (ret)
		return ret;
	s = opt_str(b, "state");
	if (!strcmp(s, "paused"))
		return control_pause(ctl);
	if (!strcmp(s, "running"))
		return control_resume(ctl);
	err_set("PATCH /vm: state '%s' is not paused or running", s);
	return -EINVAL;
}

static int do_action(struct control *ctl, json_t *b)
{
	const char *a;
	json_t *g;
	json_int_t grace = 0;
	int ret = validate(b, action_fields, ARRAY_SIZE(action_fields), "PUT /actions");

	if (ret)
		return ret;
	a = opt_str(b, "action");
	g = json_object_get(b, "grace_ms");
	if (g && strcmp(a, "shutdown")) {
		err_set("PUT /actions: grace_ms only goes with action shutdown");
		return -EINVAL;
	}
	if (g) {
		grace = json_integer_value(g);
		if (grace < 0 || grace > 600000) {
			err_set("PUT /actions: grace_ms %lld is not between 0 and 600000",
				(long long)grace);
			return -EINVAL;
		}
	}
	if (!strcmp(a, "start"))
		return control_start(ctl);
	if (!strcmp(a, "stop"))
		return control_stop(ctl);
	if (!strcmp(a, "shutdown"))
		return control_shutdown(ctl, g ? (unsigned)grace : 10000);
	err_set("PUT /actions: action '%s' is not start, shutdown or stop", a);
	return -EINVAL;
}

static int do_snapshot(struct control *ctl, json_t *b, bool load)
{
	const char *what = load ? "PUT /snapshot/load" : "PUT /snapshot/create", *type;
	int ret = validate(b, snapshot_fields, ARRAY_SIZE(snapshot_fields), what);

	if (ret)
		return ret;
	type = opt_str(b, "snapshot_type");
	if ((type || json_object_get(b, "compress")) && load) {
		err_set("%s: snapshot_type and compress only go with /snapshot/create", what);
		return -EINVAL;
	}
	if (type && strcmp(type, "full") && strcmp(type, "diff")) {
		err_set("%s: snapshot_type '%s' is not full or diff", what, type);
		return -EINVAL;
	}
	if (load)
		return control_restore(ctl, opt_str(b, "snapshot_path"), NULL, 0, NULL, 0);
	return control_snapshot(ctl, opt_str(b, "snapshot_path"), type && !strcmp(type, "diff"),
				opt_bool(b, "compress"));
}

/* "/drives/ID" -> "ID" when the prefix matches and ID has no '/'. */
static const char *path_id(const char *path, const char *prefix)
{
	size_t n = strlen(prefix);

	if (strncmp(path, prefix, n) || !path[n] || strchr(path + n, '/'))
		return NULL;
	return path + n;
}

/* GET /console?offset=N: raw output bytes, X-Console-Offset: the next offset to ask for. */
static void do_console_get(struct control *ctl, const char *offset, struct api_response *r)
{
	uint64_t pos = 0;
	size_t got = 0;
	char *end;
	int ret;

	if (offset) {
		errno = 0;
		pos = strtoull(offset, &end, 10);
		if (errno || *end || end == offset || *offset == '-') {
			respond_error(r, 400, "offset must be a byte offset (a non-negative integer)");
			return;
		}
	}
	r->body = malloc(VM_CONSOLE_RING);
	if (!r->body) {
		respond_error(r, 500, "out of memory");
		return;
	}
	ret = control_console_read(ctl, &pos, (uint8_t *)r->body, VM_CONSOLE_RING, &got);
	if (ret) {
		free(r->body);
		r->body = NULL;
		respond_result(r, ret);
		return;
	}
	r->status = 200;
	r->body_len = got;
	r->type = "application/octet-stream";
	snprintf(r->offset, sizeof(r->offset), "%" PRIu64, pos);
	if (!got) { /* an empty body: keep it valid for the server */
		r->body[0] = '\0';
	}
}

#define AGENT_PING_MS 2000

/* GET /agent: a ping through the guest agent channel (docs/guest-agent.md). */
static void do_agent_get(struct control *ctl, struct api_response *r)
{
	uint64_t rtt_us = 0;
	int ret = control_agent_ping(ctl, AGENT_PING_MS, &rtt_us);

	if (!ret)
		respond_json(r, 200, json_pack("{s:I}", "rtt_us", (json_int_t)rtt_us));
	else if (ret == -ETIMEDOUT)
		respond_error(r, 504, err_get());
	else if (ret == -ESHUTDOWN) /* the VM stopped during the wait: like any call when stopped */
		respond_error(r, 400, err_get());
	else
		respond_result(r, ret);
}

/* PUT /console: the raw body is typed at the console. 400 when the input queue is full. */
static int do_console_put(struct control *ctl, const char *body, size_t len)
{
	size_t took = 0;
	int ret = control_console_write(ctl, (const uint8_t *)body, len, &took);

	if (!ret && took < len) {
		err_set("the console input queue took %zu of %zu bytes: send the rest later", took,
			len);
		ret = -ENOSPC;
	}
	return ret;
}

void api_handle(struct control *ctl, const char *method, const char *path,
		const struct api_query *q, const char *body, size_t len, struct api_response *resp)
{
	const char *query_format = q ? q->format : NULL;
	bool get = !strcmp(method, "GET"), put = !strcmp(method, "PUT"),
	     patch = !strcmp(method, "PATCH");
	const char *allow = NULL, *id = NULL;
	json_t *b = NULL;
	json_error_t jerr;
	int ret;

	*resp = (struct api_response){0};
	err_clear();
	if (!strcmp(path, "/vm"))
		allow = "GET, PATCH";
	else if (!strcmp(path, "/console"))
		allow = "GET, PUT";
	else if (!strcmp(path, "/metrics") || !strcmp(path, "/agent"))
		allow = "GET";
	else if (!strcmp(path, "/actions") || !strcmp(path, "/machine-config") ||
		 !strcmp(path, "/boot-source") || !strcmp(path, "/snapshot/create") ||
		 !strcmp(path, "/snapshot/load"))
		allow = "PUT";
	else if ((id = path_id(path, "/drives/")) || (id = path_id(path, "/network-interfaces/")))
		allow = "PUT";
	if (!allow) {
		respond_error(resp, 404, "no such path (see docs/openapi.json)");
		return;
	}
	if (!((get && strstr(allow, "GET")) || (put && strstr(allow, "PUT")) ||
	      (patch && strstr(allow, "PATCH")))) {
		char msg[96];

		snprintf(msg, sizeof(msg), "%s is not allowed on %s (allowed: %s)", method,
			 strncmp(path, "/drives/", 8) ? (strncmp(path, "/network-interfaces/", 20)
							     ? path
							     : "/network-interfaces/{iface_id}")
						      : "/drives/{drive_id}",
			 allow);
		respond_error(resp, 405, msg);
		resp->allow = allow;
		return;
	}
	if (len > API_BODY_MAX) {
		respond_error(resp, 413, "the body is larger than 64 KiB");
		return;
	}
	if (!strcmp(path, "/console")) {
		if (get)
			do_console_get(ctl, q ? q->offset : NULL, resp);
		else
			respond_result(resp, do_console_put(ctl, body, len));
		return;
	}
	if (get) {
		if (!strcmp(path, "/vm")) {
			respond_json(resp, 200, control_describe(ctl));
			return;
		}
		if (!strcmp(path, "/agent")) {
			do_agent_get(ctl, resp);
			return;
		}
		if (!query_format || !strcmp(query_format, "json")) {
			respond_json(resp, 200, control_metrics_json(ctl));
			return;
		}
		if (strcmp(query_format, "prometheus")) {
			respond_error(resp, 400, "format must be json or prometheus");
			return;
		}
		resp->body = control_metrics_prometheus(ctl);
		resp->status = resp->body ? 200 : 500;
		resp->type = resp->body ? "text/plain; version=0.0.4" : NULL;
		return;
	}
	b = json_loadb(body ? body : "", len, JSON_REJECT_DUPLICATES, &jerr);
	if (!b) {
		char msg[256];

		snprintf(msg, sizeof(msg), "malformed JSON: %s (line %d, column %d)", jerr.text,
			 jerr.line, jerr.column);
		respond_error(resp, 400, msg);
		return;
	}
	if (patch)
		ret = do_patch_vm(ctl, b);
	else if (!strcmp(path, "/actions"))
		ret = do_action(ctl, b);
	else if (!strcmp(path, "/machine-config"))
		ret = do_machine(ctl, b);
	else if (!strcmp(path, "/boot-source"))
		ret = do_boot(ctl, b);
	else if (!strcmp(path, "/snapshot/create"))
		ret = do_snapshot(ctl, b, false);
	else if (!strcmp(path, "/snapshot/load"))
		ret = do_snapshot(ctl, b, true);
	else if (!strncmp(path, "/drives/", 8))
		ret = do_drive(ctl, id, b);
	else
		ret = do_net(ctl, id, b);
	json_decref(b);
	respond_result(resp, ret);
}

/* ---- --config FILE.json ---- */

int api_config_load(struct control *ctl, const char *path)
{
	static const char *const sections[] = {"machine-config", "boot-source", "drives",
					       "network-interfaces"};
	json_error_t jerr;
	json_t *doc = json_load_file(path, JSON_REJECT_DUPLICATES, &jerr), *v;
	const char *key;
	int ret = 0;

	if (!doc) {
		err_set("%s: %s (line %d)", path, jerr.text, jerr.line);
		return -EINVAL;
	}
	if (!json_is_object(doc)) {
		err_set("%s: the configuration must be a JSON object", path);
		ret = -EINVAL;
		goto out;
	}
	json_object_foreach(doc, key, v) {
		size_t i;

		for (i = 0; i < ARRAY_SIZE(sections) && strcmp(sections[i], key); i++)
			;
		if (i == ARRAY_SIZE(sections)) {
			err_set("%s: unknown section '%s' (machine-config, boot-source, drives, "
				"network-interfaces)", path, key);
			ret = -EINVAL;
			goto out;
		}
		if (i >= 2 && !json_is_array(v)) {
			err_set("%s: section '%s' must be an array", path, key);
			ret = -EINVAL;
			goto out;
		}
	}
	if ((v = json_object_get(doc, "machine-config")))
		ret = do_machine(ctl, v);
	if (!ret && (v = json_object_get(doc, "boot-source")))
		ret = do_boot(ctl, v);
	for (size_t i = 0; !ret && i < json_array_size(json_object_get(doc, "drives")); i++)
		ret = do_drive(ctl, NULL, json_array_get(json_object_get(doc, "drives"), i));
	for (size_t i = 0;
	     !ret && i < json_array_size(json_object_get(doc, "network-interfaces")); i++)
		ret = do_net(ctl, NULL, json_array_get(json_object_get(doc, "network-interfaces"), i));
	if (ret) {
		char msg[512];

		snprintf(msg, sizeof(msg), "%s", err_get());
		err_set("%s: %s", path, msg);
	}
out:
	json_decref(doc);
	return ret;
}
