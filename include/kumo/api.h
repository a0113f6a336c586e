/*
 * api.h - the VM control API: HTTP/1.1 with JSON bodies on a Unix socket (docs/api.md,
 * docs/openapi.json).
 *
 * Usage: `kumo run --api-sock PATH` calls api_server_start() after control_new(); the server
 * runs on its own threads (libmicrohttpd, one thread per connection, never a vCPU thread) and
 * turns requests into control_* calls. api_server_stop() closes the socket and removes it.
 * api_handle() is the whole request -> response function, without sockets, for unit tests.
 * api_config_load() applies a --config FILE.json whose sections have the same names and
 * bodies as the configuration endpoints.
 *
 * Responses: 200 with a JSON body (GET), 204 without a body (PUT/PATCH that succeeded), and
 * 4xx/5xx with {"error": "one sentence"}: 400 malformed JSON, unknown fields, wrong types,
 * bad values, or an operation the VM's state forbids (the sentence says why); 404 unknown
 * path; 405 wrong method (with Allow); 413 body over API_BODY_MAX.
 */
#ifndef KUMO_API_H
#define KUMO_API_H

#include <stddef.h>

#include "kumo/control.h"

#define API_BODY_MAX (64u << 10)

struct api_response {
	int status;
	char *body;        /* malloc'd, NULL for no body */
	size_t body_len;   /* bytes of body (binary console output); 0: strlen(body) */
	const char *type;  /* Content-Type (static), NULL for no body */
	const char *allow; /* Allow header for 405 (static), else NULL */
	char offset[24];   /* GET /console: X-Console-Offset, the offset to ask for next */
};

/* Query parameters the routes use (NULL when absent). */
struct api_query {
	const char *format; /* GET /metrics?format=json|prometheus */
	const char *offset; /* GET /console?offset=N */
};

/*
 * Serves one request. q may be NULL. body may be NULL when len is 0. Fills *resp (free
 * resp->body). Any thread; calls block while an operation runs.
 */
void api_handle(struct control *ctl, const char *method, const char *path,
		const struct api_query *q, const char *body, size_t len, struct api_response *resp);

struct api_server;

/* Binds `sock_path` (a stale socket file there is replaced) and starts serving. */
int api_server_start(const char *sock_path, struct control *ctl, struct api_server **out);
void api_server_stop(struct api_server *srv);

/*
 * --config FILE.json: {"machine-config": {...}, "boot-source": {...}, "drives": [{"drive_id":
 * ..., ...}], "network-interfaces": [{"iface_id": ..., ...}]}, each body as the matching PUT.
 * Returns 0 or -errno with err_set() naming the section.
 */
int api_config_load(struct control *ctl, const char *path);

#endif
