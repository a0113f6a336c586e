/*
 * vm_cli.c - `kumo vm ...`: a client of one VM's control API (docs/api.md) over its Unix
 * socket with libcurl (CURLOPT_UNIX_SOCKET_PATH). Prints response bodies on stdout and an
 * API error as one "kumo: ..." line on stderr; exits 0 on success, 1 otherwise.
 */
#include <curl/curl.h>
#include <getopt.h>
#include <poll.h>
#include <stdint.h>
#include <strings.h>
#include <unistd.h>
#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct buf {
	char *p;
	size_t n;
};

static size_t on_data(char *ptr, size_t size, size_t nmemb, void *ud)
{
	struct buf *b = ud;
	size_t n = size * nmemb;
	char *np = realloc(b->p, b->n + n + 1);

	if (!np)
		return 0;
	b->p = np;
	memcpy(b->p + b->n, ptr, n);
	b->n += n;
	b->p[b->n] = '\0';
	return n;
}

/* One request; returns the HTTP status (0: no answer) and the body in *out (caller frees). */
static long request(const char *sock, const char *method, const char *path, const char *body,
		    char **out)
{
	struct buf b = {0};
	struct curl_slist *hdr = NULL;
	char url[512];
	long status = 0;
	CURL *c = curl_easy_init();

	if (!c)
		return 0;
	snprintf(url, sizeof(url), "http://localhost%s", path);
	curl_easy_setopt(c, CURLOPT_UNIX_SOCKET_PATH, sock);
	curl_easy_setopt(c, CURLOPT_URL, url);
	curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_data);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, &b);
	curl_easy_setopt(c, CURLOPT_TIMEOUT, 600L);
	if (body) {
		hdr = curl_slist_append(hdr, "Content-Type: application/json");
		curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdr);
		curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
	}
	if (curl_easy_perform(c) == CURLE_OK)
		curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
	curl_slist_free_all(hdr);
	curl_easy_cleanup(c);
	*out = b.p;
	return status;
}

/* Sends one request and reports; body_fmt is a JSON body (or NULL). */
static int call(const char *sock, const char *method, const char *path, json_t *body)
{
	char *text = body ? json_dumps(body, JSON_COMPACT) : NULL, *out = NULL;
	long st = request(sock, method, path, text, &out);
	int ret = 0;

	json_decref(body);
	free(text);
	if (!st) {
		fprintf(stderr, "kumo: cannot reach the control API at %s (is `kumo run --api-sock %s` running?)\n",
			sock, sock);
		ret = 1;
	} else if (st >= 400) {
		json_t *j = out ? json_loads(out, 0, NULL) : NULL;
		const char *e = json_string_value(json_object_get(j, "error"));

		fprintf(stderr, "kumo: %s\n", e ? e : (out ? out : "error"));
		json_decref(j);
		ret = 1;
	} else if (out && *out) {
		fputs(out, stdout);
		if (out[strlen(out) - 1] != '\n')
			fputc('\n', stdout);
	}
	free(out);
	return ret;
}

static size_t on_header(char *ptr, size_t size, size_t nmemb, void *ud)
{
	size_t n = size * nmemb;
	uint64_t *pos = ud;

	if (n > 18 && !strncasecmp(ptr, "X-Console-Offset:", 17))
		*pos = strtoull(ptr + 17, NULL, 10);
	return n;
}

/*
 * kumo vm console: prints the guest console's output (GET /console?offset=N every 100 ms) and
 * sends what is typed, a line at a time (PUT /console), until end of input or the VM stops.
 */
static int console(const char *sock)
{
	uint64_t pos = 0;
	bool first = true, eof = false;
	unsigned after_eof = 0; /* polls since the end of input: output keeps coming for 1 s */
	CURL *c = curl_easy_init();

	if (!c)
		return 1;
	curl_easy_setopt(c, CURLOPT_UNIX_SOCKET_PATH, sock);
	for (;;) {
		struct buf b = {0};
		char url[96];
		long st = 0;
		struct pollfd pfd = {.fd = STDIN_FILENO, .events = POLLIN};

		snprintf(url, sizeof(url), "http://localhost/console?offset=%llu", (unsigned long long)pos);
		curl_easy_setopt(c, CURLOPT_URL, url);
		curl_easy_setopt(c, CURLOPT_HTTPGET, 1L);
		curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_data);
		curl_easy_setopt(c, CURLOPT_WRITEDATA, &b);
		curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
		curl_easy_setopt(c, CURLOPT_HEADERDATA, &pos);
		if (curl_easy_perform(c) == CURLE_OK)
			curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &st);
		if (st != 200) {
			if (first)
				fprintf(stderr, "kumo: no console at %s: %s\n", sock,
					b.p && *b.p ? b.p : "the VM is not running");
			free(b.p);
			break;
		}
		first = false;
		if (b.n && fwrite(b.p, 1, b.n, stdout) != b.n)
			break;
		fflush(stdout);
		free(b.p);
		if (eof) {
			if (++after_eof > 10)
				break;
			poll(NULL, 0, 100);
		} else if (poll(&pfd, 1, 100) > 0) {
			char line[4096];
			ssize_t n = read(STDIN_FILENO, line, sizeof(line) - 1);
			char *out = NULL;

			if (n <= 0) {
				eof = true;
				continue;
			}
			line[n] = '\0';
			st = request(sock, "PUT", "/console", line, &out);
			free(out);
			if (st != 204)
				break;
		}
	}
	curl_easy_cleanup(c);
	return first;
}

static void usage(FILE *f)
{
	fputs("usage: kumo vm [--sock PATH] COMMAND [ARGS]\n"
	      "  (the socket is --sock, else $KUMO_API_SOCK: the --api-sock of `kumo run`)\n"
	      "commands:\n"
	      "  status                       GET /vm: state, configuration, vCPUs\n"
	      "  configure [--cpus N] [--mem MIB] [--hugepages] [--agent auto|on|off]\n"
	      "            [--kernel F] [--initrd F] [--append S] [--bios F] [--disk ID=PATH]...\n"
	      "                               PUT /machine-config, /boot-source, /drives/ID\n"
	      "  start | stop                 PUT /actions {\"action\": ...}\n"
	      "  shutdown [--grace MS]        PUT /actions {\"action\": \"shutdown\"}\n"
	      "  pause | resume               PATCH /vm {\"state\": \"paused\" | \"running\"}\n"
	      "  snapshot DIR [--diff] [--compress]\n"
	      "                               PUT /snapshot/create (the VM must be paused; --diff:\n"
	      "                               only memory written since the last snapshot; --compress:\n"
	      "                               zstd, restored eagerly)\n"
	      "  restore DIR                  PUT /snapshot/load (into a VMM not yet started)\n"
	      "  metrics [--prometheus]       GET /metrics\n"
	      "  console                      the guest console: output as it comes, input a line\n"
	      "                               at a time (GET/PUT /console); Ctrl-D ends (after 1 s)\n",
	      f);
}

static int configure(const char *sock, int argc, char **argv)
{
	static const struct option opts[] = {
		{"cpus", required_argument, NULL, 'c'},	 {"mem", required_argument, NULL, 'm'},
		{"kernel", required_argument, NULL, 'k'}, {"initrd", required_argument, NULL, 'i'},
		{"append", required_argument, NULL, 'a'}, {"bios", required_argument, NULL, 'b'},
		{"disk", required_argument, NULL, 'd'},	 {"hugepages", no_argument, NULL, 'H'},
		{"agent", required_argument, NULL, 'G'}, {NULL, 0, NULL, 0},
	};
	const char *agent = NULL;
	bool huge = false;
	json_t *boot = json_object(), *machine = NULL, *drives = json_object();
	long cpus = 1, mem = 512;
	bool have_machine = false;
	int c, ret = 0;

	optind = 1;
	opterr = 0;
	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		char *eq;

		switch (c) {
		case 'c': cpus = strtol(optarg, NULL, 10); have_machine = true; break;
		case 'm': mem = strtol(optarg, NULL, 10); have_machine = true; break;
		case 'H': huge = true; have_machine = true; break;
		case 'G': agent = optarg; have_machine = true; break;
		case 'k': json_object_set_new(boot, "kernel_image_path", json_string(optarg)); break;
		case 'i': json_object_set_new(boot, "initrd_path", json_string(optarg)); break;
		case 'a': json_object_set_new(boot, "boot_args", json_string(optarg)); break;
		case 'b': json_object_set_new(boot, "firmware_path", json_string(optarg)); break;
		case 'd':
			eq = strchr(optarg, '=');
			if (!eq) {
				fprintf(stderr, "kumo: --disk wants ID=PATH\n");
				ret = 1;
				goto out;
			}
			*eq = '\0';
			json_object_set_new(drives, optarg, json_string(eq + 1));
			break;
		default:
			fprintf(stderr, "kumo: unknown option '%s' for kumo vm configure\n",
				argv[optind - 1]);
			ret = 1;
			goto out;
		}
	}
	if (have_machine) {
		/* The VMM checks the values and answers with the sentence for a bad one. */
		machine = json_pack("{s:I,s:I}", "vcpu_count", (json_int_t)cpus, "mem_size_mib",
				    (json_int_t)mem);
		if (huge)
			json_object_set_new(machine, "huge_pages", json_string("thp"));
		if (agent)
			json_object_set_new(machine, "agent", json_string(agent));
		ret = call(sock, "PUT", "/machine-config", machine);
	}
	if (!ret && json_object_size(boot))
		ret = call(sock, "PUT", "/boot-source", json_incref(boot));
	const char *id;
	json_t *path;
	json_object_foreach(drives, id, path) {
		char p[128];

		if (ret)
			break;
		snprintf(p, sizeof(p), "/drives/%s", id);
		ret = call(sock, "PUT", p, json_pack("{s:O}", "path_on_host", path));
	}
out:
	json_decref(boot);
	json_decref(drives);
	return ret;
}

int vm_cli_main(int argc, char **argv)
{
	const char *sock = getenv("KUMO_API_SOCK"), *cmd;
	int i = 1;

	if (argc > 2 && !strcmp(argv[1], "--sock")) {
		sock = argv[2];
		i = 3;
	}
	if (i >= argc || !strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
		usage(i >= argc ? stderr : stdout);
		return i >= argc;
	}
	cmd = argv[i];
	if (!sock || !*sock) {
		fprintf(stderr, "kumo: no control socket: give --sock PATH or set KUMO_API_SOCK\n");
		return 1;
	}
	curl_global_init(CURL_GLOBAL_DEFAULT);
	if (!strcmp(cmd, "status") && argc == i + 1)
		return call(sock, "GET", "/vm", NULL);
	if ((!strcmp(cmd, "start") || !strcmp(cmd, "stop")) && argc == i + 1)
		return call(sock, "PUT", "/actions", json_pack("{s:s}", "action", cmd));
	if (!strcmp(cmd, "shutdown")) {
		json_t *b = json_pack("{s:s}", "action", "shutdown");

		if (argc == i + 3 && !strcmp(argv[i + 1], "--grace"))
			json_object_set_new(b, "grace_ms", json_integer(strtol(argv[i + 2], NULL, 10)));
		else if (argc != i + 1) {
			json_decref(b);
			usage(stderr);
			return 1;
		}
		return call(sock, "PUT", "/actions", b);
	}
	if ((!strcmp(cmd, "pause") || !strcmp(cmd, "resume")) && argc == i + 1)
		return call(sock, "PATCH", "/vm",
			    json_pack("{s:s}", "state", cmd[0] == 'p' ? "paused" : "running"));
	if (!strcmp(cmd, "snapshot") && argc > i + 2) {
		json_t *b = json_pack("{s:s}", "snapshot_path", argv[i + 1]);

		for (int k = i + 2; k < argc; k++) {
			if (!strcmp(argv[k], "--diff")) {
				json_object_set_new(b, "snapshot_type", json_string("diff"));
			} else if (!strcmp(argv[k], "--compress")) {
				json_object_set_new(b, "compress", json_true());
			} else {
				json_decref(b);
				usage(stderr);
				return 1;
			}
		}
		return call(sock, "PUT", "/snapshot/create", b);
	}
	if ((!strcmp(cmd, "snapshot") || !strcmp(cmd, "restore")) && argc == i + 2)
		return call(sock, "PUT", cmd[0] == 's' ? "/snapshot/create" : "/snapshot/load",
			    json_pack("{s:s}", "snapshot_path", argv[i + 1]));
	if (!strcmp(cmd, "metrics") && argc == i + 1)
		return call(sock, "GET", "/metrics", NULL);
	if (!strcmp(cmd, "metrics") && argc == i + 2 && !strcmp(argv[i + 1], "--prometheus"))
		return call(sock, "GET", "/metrics?format=prometheus", NULL);
	if (!strcmp(cmd, "configure"))
		return configure(sock, argc - i, argv + i);
	if (!strcmp(cmd, "console") && argc == i + 1)
		return console(sock);
	usage(stderr);
	return 1;
}
