/*
 * server.c - the control API's HTTP/1.1 server on a Unix socket (libmicrohttpd).
 *
 * One thread per connection (MHD_USE_THREAD_PER_CONNECTION), so several clients are served at
 * once and a slow operation (a snapshot) does not stall a GET; control.c serializes the
 * operations themselves. Bodies are collected up to API_BODY_MAX; a larger one is answered
 * 413 (from Content-Length before it is read, or once it passes the limit).
 */
#include <errno.h>
#include <microhttpd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "kumo/api.h"
#include "kumo/base.h"

struct api_server {
	struct MHD_Daemon *mhd;
	struct control *ctl;
	char *path;
	int fd;
};

struct api_req {
	char *body;
	size_t len;
	bool too_big;
};

static enum MHD_Result send_resp(struct MHD_Connection *c, const struct api_response *r)
{
	struct MHD_Response *mr;
	enum MHD_Result ret;
	size_t n = r->body ? (r->body_len ? r->body_len : strlen(r->body)) : 0;

	mr = MHD_create_response_from_buffer(n, r->body ? r->body : (char *)"", MHD_RESPMEM_MUST_COPY);
	if (!mr)
		return MHD_NO;
	if (r->type)
		MHD_add_response_header(mr, "Content-Type", r->type);
	if (r->allow)
		MHD_add_response_header(mr, "Allow", r->allow);
	if (r->offset[0])
		MHD_add_response_header(mr, "X-Console-Offset", r->offset);
	ret = MHD_queue_response(c, (unsigned)r->status, mr);
	MHD_destroy_response(mr);
	return ret;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url,
				  const char *method, const char *version, const char *upload,
				  size_t *upload_size, void **con_cls)
{
	struct api_server *srv = cls;
	struct api_req *rq = *con_cls;
	struct api_response resp;
	enum MHD_Result ret;

	if (!rq) {
		const char *cl = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Content-Length");

		rq = calloc(1, sizeof(*rq));
		if (!rq)
			return MHD_NO;
		*con_cls = rq;
		if (cl && strtoull(cl, NULL, 10) > API_BODY_MAX)
			rq->too_big = true;
		return MHD_YES;
	}
	if (*upload_size) {
		if (!rq->too_big && rq->len + *upload_size <= API_BODY_MAX) {
			char *nb = realloc(rq->body, rq->len + *upload_size + 1);

			if (!nb)
				return MHD_NO;
			rq->body = nb;
			memcpy(rq->body + rq->len, upload, *upload_size);
			rq->len += *upload_size;
			rq->body[rq->len] = '\0';
		} else {
			rq->too_big = true;
		}
		*upload_size = 0;
		return MHD_YES;
	}
	if (rq->too_big) {
		resp = (struct api_response){.status = 413,
					     .body = strdup("{\"error\":\"the body is larger than 64 KiB\"}"),
					     .type = "application/json"};
	} else {
		struct api_query q = {
			.format = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "format"),
			.offset = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "offset")};

		api_handle(srv->ctl, method, url, &q, rq->body, rq->len, &resp);
	}
	ret = send_resp(c, &resp);
	free(resp.body);
	return ret;
}

static void on_done(void *cls, struct MHD_Connection *c, void **con_cls,
		    enum MHD_RequestTerminationCode toe)
{
	struct api_req *rq = *con_cls;

	if (rq) {
		free(rq->body);
		free(rq);
		*con_cls = NULL;
	}
}

int api_server_start(const char *sock_path, struct control *ctl, struct api_server **out)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	struct api_server *srv;
	struct stat st;
	int ret;

	if (strlen(sock_path) >= sizeof(sa.sun_path)) {
		err_set("--api-sock %s: the path is longer than %zu bytes", sock_path,
			sizeof(sa.sun_path) - 1);
		return -ENAMETOOLONG;
	}
	srv = calloc(1, sizeof(*srv));
	if (!srv || !(srv->path = strdup(sock_path))) {
		free(srv);
		err_set("out of memory");
		return -ENOMEM;
	}
	srv->ctl = ctl;
	strcpy(sa.sun_path, sock_path);
	/* Replace a stale socket left by a dead process, never another kind of file. */
	if (!lstat(sock_path, &st)) {
		if (!S_ISSOCK(st.st_mode)) {
			err_set("--api-sock %s exists and is not a socket", sock_path);
			ret = -EEXIST;
			goto out_free;
		}
		unlink(sock_path);
	}
	srv->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (srv->fd < 0 || bind(srv->fd, (struct sockaddr *)&sa, sizeof(sa)) ||
	    listen(srv->fd, 64)) {
		ret = -errno;
		err_set("--api-sock %s: %s", sock_path, strerror(errno));
		goto out_close;
	}
	srv->mhd = MHD_start_daemon(MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD,
				    0, NULL, NULL, on_request, srv, MHD_OPTION_LISTEN_SOCKET,
				    srv->fd, MHD_OPTION_NOTIFY_COMPLETED, on_done, srv,
				    MHD_OPTION_CONNECTION_TIMEOUT, 60u, MHD_OPTION_CONNECTION_LIMIT,
				    64u, MHD_OPTION_END);
	if (!srv->mhd) {
		err_set("--api-sock %s: cannot start the HTTP server", sock_path);
		ret = -EIO;
		goto out_unlink;
	}
	*out = srv;
	return 0;

out_unlink:
	unlink(sock_path);
out_close:
	if (srv->fd >= 0)
		close(srv->fd);
out_free:
	free(srv->path);
	free(srv);
	return ret;
}

void api_server_stop(struct api_server *srv)
{
	if (!srv)
		return;
	MHD_stop_daemon(srv->mhd); /* closes the listening socket it was given */
	unlink(srv->path);
	free(srv->path);
	free(srv);
}
