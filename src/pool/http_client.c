/*
 * http_client.c - one blocking HTTP request with libcurl, for the agent and the CLI. Only
 * http:// URLs on the hosts the caller names, or a VMM's control API on its Unix socket;
 * bodies are JSON.
 */
#include <curl/curl.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kumo/base.h"
#include "kumo/pool/pool.h"

#define REPLY_MAX (16u << 20)

struct buf {
	char *p;
	size_t len;
	bool over;
};

static size_t on_data(char *data, size_t size, size_t n, void *cls)
{
	struct buf *b = cls;
	size_t add = size * n;
	char *np;

	if (b->len + add > REPLY_MAX) {
		b->over = true;
		return 0;
	}
	np = realloc(b->p, b->len + add + 1);
	if (!np)
		return 0;
	b->p = np;
	memcpy(b->p + b->len, data, add);
	b->len += add;
	b->p[b->len] = '\0';
	return add;
}

static pthread_once_t once = PTHREAD_ONCE_INIT;

static void init_curl(void)
{
	curl_global_init(CURL_GLOBAL_DEFAULT);
}

static int request(const char *unix_path, const char *method, const char *url,
		   const char *token, const char *body, int timeout_ms, int *status, char **reply)
{
	struct buf b = {0};
	struct curl_slist *hdr = NULL;
	char auth[256];
	CURL *c;
	CURLcode rc;
	long code = 0;
	int ret = 0;

	pthread_once(&once, init_curl);
	c = curl_easy_init();
	if (!c)
		return -ENOMEM;
	hdr = curl_slist_append(hdr, "Content-Type: application/json");
	if (token) {
		snprintf(auth, sizeof(auth), "Authorization: Bearer %.200s", token);
		hdr = curl_slist_append(hdr, auth);
	}
	curl_easy_setopt(c, CURLOPT_URL, url);
	if (unix_path)
		curl_easy_setopt(c, CURLOPT_UNIX_SOCKET_PATH, unix_path);
	curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
	curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdr);
	curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http");
	curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, (long)timeout_ms);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_data);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, &b);
	if (body) {
		curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
		curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, (long)strlen(body));
	}
	rc = curl_easy_perform(c);
	if (rc != CURLE_OK) {
		err_set("%s %s: %s", method, url, b.over ? "reply too large" : curl_easy_strerror(rc));
		ret = rc == CURLE_COULDNT_CONNECT ? -ECONNREFUSED : -EIO;
		free(b.p);
		b.p = NULL;
	} else {
		curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &code);
		*status = (int)code;
		if (!b.p)
			b.p = strdup("");
		*reply = b.p;
	}
	curl_slist_free_all(hdr);
	curl_easy_cleanup(c);
	return ret;
}

int pool_http(const char *method, const char *url, const char *token, const char *body,
	      int timeout_ms, int *status, char **reply)
{
	return request(NULL, method, url, token, body, timeout_ms, status, reply);
}

int pool_http_unix(const char *sock, const char *method, const char *path, const char *body,
		   int timeout_ms, int *status, char **reply)
{
	char url[256];

	snprintf(url, sizeof(url), "http://localhost%.200s", path);
	return request(sock, method, url, NULL, body, timeout_ms, status, reply);
}
