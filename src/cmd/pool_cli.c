/*
 * pool_cli.c - the pool's `kumo` subcommands: controller, agent, up (one-machine pool), and
 * the API client commands server, host, flavor, image, group, tenant, usage. Client commands
 * talk to $KUMO_URL (default http://127.0.0.1:7000) with $KUMO_TOKEN, print tables, or the
 * API's JSON with --json. Exit status: 0 ok, 1 error (one line on stderr).
 */
#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "kumo/base.h"
#include "kumo/pool/pool.h"
#include "kumo/pool/sched.h"
#include "kumo/pool/store.h"

static volatile int stop_flag;
static bool opt_json;

static void on_stop(int sig)
{
	stop_flag = 1;
}

static int fail(const char *fmt, ...) KUMO_PRINTF(1, 2);

static int fail(const char *fmt, ...)
{
	va_list ap;

	fputs("kumo: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	return 1;
}

static void catch_signals(void)
{
	struct sigaction sa = {.sa_handler = on_stop};

	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);
}

static int split_addr(const char *s, char *addr, size_t len, int *port)
{
	const char *colon = strrchr(s, ':');
	char *end;
	long p;

	if (!colon || (size_t)(colon - s) >= len)
		return -EINVAL;
	memcpy(addr, s, (size_t)(colon - s));
	addr[colon - s] = '\0';
	p = strtol(colon + 1, &end, 10);
	if (*end || p < 1 || p > 65535)
		return -EINVAL;
	*port = (int)p;
	return 0;
}

static int weigher_opt(struct sched_config *sc, const char *arg)
{
	char name[64];
	const char *eq = strchr(arg, '=');
	int w;

	if (!eq || (size_t)(eq - arg) >= sizeof(name))
		return -EINVAL;
	memcpy(name, arg, (size_t)(eq - arg));
	name[eq - arg] = '\0';
	w = sched_weigher_by_name(name);
	if (w < 0)
		return -EINVAL;
	sc->mult[w] = strtod(eq + 1, NULL);
	return 0;
}

/* --- kumo controller --- */

static int cmd_controller(int argc, char **argv)
{
	static const struct option opts[] = {
		{"db", required_argument, NULL, 'd'},	     {"listen", required_argument, NULL, 'l'},
		{"admin-token", required_argument, NULL, 't'},
		{"heartbeat-timeout", required_argument, NULL, 'H'},
		{"sample", required_argument, NULL, 's'},    {"top-n", required_argument, NULL, 'n'},
		{"weigher", required_argument, NULL, 'w'},   {"max-attempts", required_argument, NULL, 'a'},
		{"verbose", no_argument, NULL, 'v'},	     {NULL, 0, NULL, 0},
	};
	struct pool_ctl_config cfg = {.db_url = "pool.db", .admin_token = getenv("KUMO_ADMIN_TOKEN")};
	const char *listen = "127.0.0.1:7000";
	struct pool_ctl *ctl;
	char addr[64];
	int port, c, ret;

	sched_config_init(&cfg.sched, (uint64_t)clock_ns() ^ (uint64_t)getpid());
	optind = 1;
	opterr = 0;
	while ((c = getopt_long(argc, argv, "v", opts, NULL)) != -1) {
		switch (c) {
		case 'd': cfg.db_url = optarg; break;
		case 'l': listen = optarg; break;
		case 't': cfg.admin_token = optarg; break;
		case 'H': cfg.sched.heartbeat_timeout_ms = (int64_t)(strtod(optarg, NULL) * 1000); break;
		case 's': cfg.sched.sample = atoi(optarg); break;
		case 'n': cfg.sched.top_n = atoi(optarg); break;
		case 'a': cfg.sched.max_attempts = atoi(optarg); break;
		case 'v': log_level++; break;
		case 'w':
			if (weigher_opt(&cfg.sched, optarg))
				return fail("--weigher takes NAME=MULTIPLIER with a known weigher");
			break;
		default: return fail("unknown or incomplete option '%s' for kumo controller", argv[optind - 1]);
		}
	}
	if (!cfg.admin_token)
		return fail("set an admin token with --admin-token or KUMO_ADMIN_TOKEN");
	if (split_addr(listen, addr, sizeof(addr), &port))
		return fail("--listen takes ADDRESS:PORT");
	ret = pool_ctl_new(&cfg, &ctl);
	if (ret)
		return fail("%s", *err_get() ? err_get() : strerror(-ret));
	ret = pool_ctl_listen(ctl, addr, port);
	if (ret) {
		pool_ctl_free(ctl);
		return fail("%s", err_get());
	}
	catch_signals();
	fprintf(stderr, "kumo controller: listening on http://%s:%d, store %s\n", addr, port, cfg.db_url);
	while (!stop_flag)
		pause();
	pool_ctl_free(ctl);
	return 0;
}

/* --- kumo agent --- */

static uint32_t bits_of(const char *list, uint32_t (*bit)(const char *))
{
	char buf[128], *save = NULL;
	uint32_t m = 0;

	snprintf(buf, sizeof(buf), "%s", list);
	for (char *t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
		uint32_t b = bit(t);

		if (!b)
			return 0;
		m |= b;
	}
	return m;
}

static int self_path(char *buf, size_t len)
{
	ssize_t n = readlink("/proc/self/exe", buf, len - 1);

	if (n <= 0)
		return -ENOENT;
	buf[n] = '\0';
	return 0;
}

static int read_token_file(const char *path, char *buf, size_t len)
{
	FILE *f = fopen(path, "r");
	size_t n;

	if (!f)
		return -errno;
	n = fread(buf, 1, len - 1, f);
	fclose(f);
	buf[n] = '\0';
	buf[strcspn(buf, " \r\n")] = '\0';
	return *buf ? 0 : -EINVAL;
}

static char token_buf[128];

static int agent_parse(int argc, char **argv, struct pool_agent_config *cfg, char *addr,
		       size_t alen)
{
	static const struct option opts[] = {
		{"controller", required_argument, NULL, 'c'}, {"name", required_argument, NULL, 'n'},
		{"listen", required_argument, NULL, 'l'},     {"state-dir", required_argument, NULL, 'S'},
		{"az", required_argument, NULL, 'z'},	      {"arch", required_argument, NULL, 'A'},
		{"driver", required_argument, NULL, 'D'},     {"vcpus", required_argument, NULL, 1},
		{"ram-mb", required_argument, NULL, 2},	      {"disk-gb", required_argument, NULL, 3},
		{"reserved-vcpus", required_argument, NULL, 4}, {"reserved-ram-mb", required_argument, NULL, 5},
		{"reserved-disk-gb", required_argument, NULL, 6}, {"vcpu-ratio", required_argument, NULL, 7},
		{"ram-ratio", required_argument, NULL, 8},    {"disk-ratio", required_argument, NULL, 9},
		{"heartbeat", required_argument, NULL, 'h'},  {"verbose", no_argument, NULL, 'v'},
		{"token-file", required_argument, NULL, 'T'}, {"kumo-bin", required_argument, NULL, 'K'},
		{NULL, 0, NULL, 0},
	};
	const char *listen = "127.0.0.1:7001";
	int c;

	optind = 1;
	opterr = 0;
	while ((c = getopt_long(argc, argv, "v", opts, NULL)) != -1) {
		switch (c) {
		case 'c': cfg->controller = optarg; break;
		case 'n': cfg->name = optarg; break;
		case 'l': listen = optarg; break;
		case 'S': cfg->state_dir = optarg; break;
		case 'z': cfg->az = optarg; break;
		case 'A': cfg->archs = bits_of(optarg, sched_arch_bit); break;
		case 'D': cfg->drivers = bits_of(optarg, sched_driver_bit); break;
		case 1: case 2: case 3: cfg->total[c - 1] = strtoll(optarg, NULL, 10); break;
		case 4: case 5: case 6: cfg->reserved[c - 4] = strtoll(optarg, NULL, 10); break;
		case 7: case 8: case 9: cfg->ratio[c - 7] = strtod(optarg, NULL); break;
		case 'h': cfg->heartbeat_ms = (int)(strtod(optarg, NULL) * 1000); break;
		case 'v': log_level++; break;
		case 'T':
			if (read_token_file(optarg, token_buf, sizeof(token_buf)))
				return fail("cannot read a token from %s", optarg);
			cfg->token = token_buf;
			break;
		case 'K': cfg->kumo_bin = optarg; break;
		default: return fail("unknown or incomplete option '%s' for kumo agent", argv[optind - 1]);
		}
	}
	if (!cfg->archs || !cfg->drivers)
		return fail("--arch and --driver take comma lists of riscv64 and kumo,qemu");
	if (!cfg->name || !cfg->state_dir)
		return fail("kumo agent needs --name and --state-dir");
	if (!cfg->token || !*cfg->token)
		return fail("kumo agent needs its host's token (kumo host token create NAME) in "
			    "KUMO_AGENT_TOKEN or --token-file FILE");
	if (split_addr(listen, addr, alen, &cfg->listen_port))
		return fail("--listen takes ADDRESS:PORT");
	cfg->listen_addr = addr;
	return 0;
}

static void agent_defaults(struct pool_agent_config *cfg, char *kumo_bin, size_t len)
{
	long pages = sysconf(_SC_PHYS_PAGES), psz = sysconf(_SC_PAGESIZE);

	cfg->controller = getenv("KUMO_URL") ? getenv("KUMO_URL") : "http://127.0.0.1:7000";
	cfg->token = getenv("KUMO_AGENT_TOKEN");
	cfg->archs = SCHED_ARCH_RISCV64;
	cfg->drivers = SCHED_DRV_KUMO;
	cfg->total[SCHED_VCPU] = sysconf(_SC_NPROCESSORS_ONLN);
	cfg->total[SCHED_RAM] = pages > 0 && psz > 0 ? (int64_t)pages * psz / (1 << 20) : 1024;
	cfg->total[SCHED_DISK] = 100;
	for (int r = 0; r < SCHED_NRES; r++)
		cfg->ratio[r] = 1.0;
	cfg->ratio[SCHED_VCPU] = 4.0;
	if (!self_path(kumo_bin, len))
		cfg->kumo_bin = kumo_bin;
}

static int cmd_agent(int argc, char **argv)
{
	struct pool_agent_config cfg = {0};
	char addr[64], kumo_bin[PATH_MAX];
	int ret;

	agent_defaults(&cfg, kumo_bin, sizeof(kumo_bin));
	if (agent_parse(argc, argv, &cfg, addr, sizeof(addr)))
		return 1;
	catch_signals();
	ret = pool_agent_run(&cfg, &stop_flag);
	return ret ? fail("%s", err_get()) : 0;
}

/* --- API client commands --- */

static const char *api_url(void)
{
	const char *u = getenv("KUMO_URL");

	return u && *u ? u : "http://127.0.0.1:7000";
}

/* One request; prints the error message and returns NULL on 4xx/5xx or no connection. */
static json_t *call(const char *method, const char *path, json_t *body)
{
	char url[512], *text = NULL, *reply = NULL;
	const char *token = getenv("KUMO_TOKEN");
	int status = 0, ret;
	json_t *out;

	if (!token || !*token)
		token = getenv("KUMO_ADMIN_TOKEN");
	snprintf(url, sizeof(url), "%s%s", api_url(), path);
	if (body) {
		text = json_dumps(body, JSON_COMPACT);
		json_decref(body);
	}
	ret = pool_http(method, url, token, text, 30000, &status, &reply);
	free(text);
	if (ret) {
		fail("cannot reach the controller: %s", err_get());
		return NULL;
	}
	out = json_loads(reply, 0, NULL);
	if (status >= 400 || !out) {
		json_t *e = json_object_get(out, "error");

		fail("%s (HTTP %d)", json_is_string(e) ? json_string_value(e) : reply, status);
		if (out && json_object_get(out, "explain")) {
			json_t *x = json_object_get(out, "explain"), *v;
			const char *k;
			size_t i;

			fprintf(stderr, "  %lld hosts; removed by filter:",
				(long long)json_integer_value(json_object_get(x, "hosts")));
			json_object_foreach(json_object_get(x, "removed"), k, v)
				fprintf(stderr, " %s=%lld", k, (long long)json_integer_value(v));
			fputc('\n', stderr);
			json_array_foreach(json_object_get(x, "rejected"), i, v) {
				if (i >= 20) {
					fprintf(stderr, "  ... (--json shows every host)\n");
					break;
				}
				fprintf(stderr, "  %-20s %-18s %s\n",
					json_string_value(json_object_get(v, "host")),
					json_string_value(json_object_get(v, "filter")),
					json_string_value(json_object_get(v, "reason")));
			}
			if (opt_json) {
				char *d = json_dumps(out, JSON_INDENT(2));

				puts(d);
				free(d);
			}
		}
		json_decref(out);
		free(reply);
		return NULL;
	}
	free(reply);
	return out;
}

static void cell(json_t *v, char *buf, size_t len)
{
	if (json_is_string(v))
		snprintf(buf, len, "%s", json_string_value(v));
	else if (json_is_integer(v))
		snprintf(buf, len, "%lld", (long long)json_integer_value(v));
	else if (json_is_real(v))
		snprintf(buf, len, "%.1f", json_real_value(v));
	else if (json_is_boolean(v))
		snprintf(buf, len, "%s", json_is_true(v) ? "yes" : "no");
	else if (json_is_array(v)) {
		size_t o = 0, i;
		json_t *x;

		buf[0] = '\0';
		json_array_foreach(v, i, x)
			if (o < len)
				o += (size_t)snprintf(buf + o, len - o, "%s%s", i ? "," : "",
						      json_is_string(x) ? json_string_value(x) : "?");
	} else
		snprintf(buf, len, "-");
}

/* Prints `arr` as a table of `cols` (NULL-terminated), or the JSON with --json. */
static int print_table(json_t *out, const char *key, const char *const *cols)
{
	json_t *arr = key ? json_object_get(out, key) : out, *row;
	size_t w[16] = {0}, i;
	int nc = 0;
	char buf[256];

	if (opt_json || !arr) {
		char *d = json_dumps(out, JSON_INDENT(2));

		puts(d);
		free(d);
		json_decref(out);
		return 0;
	}
	if (!json_is_array(arr)) {
		json_t *one = json_array();

		json_array_append(one, arr);
		arr = one;
	} else {
		json_incref(arr);
	}
	for (nc = 0; cols[nc] && nc < 16; nc++)
		w[nc] = strlen(cols[nc]);
	json_array_foreach(arr, i, row)
		for (int c = 0; c < nc; c++) {
			cell(json_object_get(row, cols[c]), buf, sizeof(buf));
			if (strlen(buf) > w[c])
				w[c] = strlen(buf);
		}
	for (int c = 0; c < nc; c++)
		printf("%-*s%s", (int)w[c], cols[c], c + 1 < nc ? "  " : "\n");
	json_array_foreach(arr, i, row)
		for (int c = 0; c < nc; c++) {
			cell(json_object_get(row, cols[c]), buf, sizeof(buf));
			printf("%-*s%s", (int)w[c], buf, c + 1 < nc ? "  " : "\n");
		}
	json_decref(arr);
	json_decref(out);
	return 0;
}

/* Parses --key value pairs into a JSON object; ints where the spec says so. */
struct kv {
	const char *opt, *field;
	char type; /* s string, i integer, b flag, f number */
};

static int kv_parse(int argc, char **argv, int first, const struct kv *spec, json_t *o)
{
	for (int i = first; i < argc; i++) {
		const struct kv *k;

		for (k = spec; k->opt && strcmp(k->opt, argv[i]); k++)
			;
		if (!k->opt)
			return fail("unknown option '%s'", argv[i]);
		if (k->type == 'b') {
			json_object_set_new(o, k->field, json_true());
			continue;
		}
		if (i + 1 >= argc)
			return fail("option %s needs a value", argv[i]);
		const char *v = argv[++i];
		char *end;

		if (k->type == 'i') {
			long long n = strtoll(v, &end, 10);

			if (*end || end == v)
				return fail("option %s takes an integer, not '%s'", k->opt, v);
			json_object_set_new(o, k->field, json_integer(n));
		} else if (k->type == 'f') {
			double d = strtod(v, &end);

			if (*end || end == v)
				return fail("option %s takes a number, not '%s'", k->opt, v);
			json_object_set_new(o, k->field, json_real(d));
		} else {
			json_object_set_new(o, k->field, json_string(v));
		}
	}
	return 0;
}

static const char *const server_cols[] = {"id", "name", "state", "flavor", "image", "vcpus",
					  "ram_mb", "fault", NULL};

static int cmd_server(int argc, char **argv)
{
	static const struct kv create_kv[] = {
		{"--flavor", "flavor", 's'},	      {"--image", "image", 's'},
		{"--group", "group", 's'},	      {"--az", "availability_zone", 's'},
		{"--dry-run", "dry_run", 'b'},	      {"--request-id", "request_id", 's'},
		{NULL, NULL, 0},
	};
	char path[128];
	json_t *out;

	if (argc < 2)
		return fail("usage: kumo server create|list|show|delete|console");
	if (!strcmp(argv[1], "list")) {
		out = call("GET", "/v1/servers", NULL);
		return out ? print_table(out, "servers", server_cols) : 1;
	}
	if (!strcmp(argv[1], "create")) {
		json_t *o = json_object();

		if (argc < 3)
			return fail("usage: kumo server create NAME --flavor F --image I [--group G] "
				    "[--az Z] [--dry-run]");
		json_object_set_new(o, "name", json_string(argv[2]));
		if (kv_parse(argc, argv, 3, create_kv, o)) {
			json_decref(o);
			return 1;
		}
		bool dry = json_is_true(json_object_get(o, "dry_run"));

		out = call("POST", "/v1/servers", o);
		if (!out)
			return 1;
		if (dry && !opt_json) {
			json_t *r, *v;
			const char *k;
			size_t i;

			printf("%-4s %-20s %8s  weighers\n", "rank", "host", "score");
			json_array_foreach(json_object_get(out, "ranking"), i, r) {
				printf("%-4zu %-20s %8.3f ", i + 1,
				       json_string_value(json_object_get(r, "host")),
				       json_real_value(json_object_get(r, "score")));
				json_object_foreach(json_object_get(r, "weighers"), k, v)
					if (json_real_value(v) != 0)
						printf(" %s=%+.3f", k, json_real_value(v));
				putchar('\n');
			}
			json_decref(out);
			return 0;
		}
		return print_table(out, NULL, server_cols);
	}
	if (argc < 3)
		return fail("usage: kumo server %s ID", argv[1]);
	snprintf(path, sizeof(path), "/v1/servers/%.32s", argv[2]);
	if (!strcmp(argv[1], "show")) {
		out = call("GET", path, NULL);
		return out ? print_table(out, NULL, server_cols) : 1;
	}
	if (!strcmp(argv[1], "delete")) {
		out = call("DELETE", path, NULL);
		return out ? print_table(out, NULL, server_cols) : 1;
	}
	if (!strcmp(argv[1], "console")) {
		strncat(path, "/console", sizeof(path) - strlen(path) - 1);
		out = call("GET", path, NULL);
		if (!out)
			return 1;
		if (opt_json)
			return print_table(out, NULL, NULL);
		fputs(json_string_value(json_object_get(out, "console")), stdout);
		json_decref(out);
		return 0;
	}
	return fail("unknown server command '%s'", argv[1]);
}

static int simple(int argc, char **argv, const char *what, const char *path, const char *key,
		  const char *const *cols, const struct kv *create_kv)
{
	json_t *out;

	if (argc >= 2 && !strcmp(argv[1], "list")) {
		out = call("GET", path, NULL);
		return out ? print_table(out, key, cols) : 1;
	}
	if (argc >= 3 && !strcmp(argv[1], "create") && create_kv) {
		json_t *o = json_object();

		json_object_set_new(o, "name", json_string(argv[2]));
		if (kv_parse(argc, argv, 3, create_kv, o)) {
			json_decref(o);
			return 1;
		}
		out = call("POST", path, o);
		return out ? print_table(out, NULL, (const char *const[]){"id", "name", "token", NULL})
			   : 1;
	}
	if (argc >= 3 && !strcmp(argv[1], "delete") && !strcmp(what, "flavor")) {
		char p[128];

		snprintf(p, sizeof(p), "%s/%.64s", path, argv[2]);
		out = call("DELETE", p, NULL);
		return out ? print_table(out, NULL, (const char *const[]){"deleted", NULL}) : 1;
	}
	return fail("usage: kumo %s list|create NAME [options]%s", what,
		    !strcmp(what, "flavor") ? "|delete NAME" : "");
}

static int cmd_host(int argc, char **argv)
{
	static const char *const cols[] = {"id", "name", "az", "up", "enabled", "drivers",
					   "vcpus_used", "vcpus", "ram_mb_used", "ram_mb",
					   "instances", NULL};

	if (argc >= 3 && (!strcmp(argv[1], "enable") || !strcmp(argv[1], "disable"))) {
		char p[96];
		json_t *out;

		snprintf(p, sizeof(p), "/v1/hosts/%.32s", argv[2]);
		out = call("PUT", p, json_pack("{sb}", "enabled", argv[1][0] == 'e'));
		return out ? print_table(out, NULL, (const char *const[]){"id", NULL}) : 1;
	}
	if (argc >= 2 && !strcmp(argv[1], "token")) {
		json_t *out;

		if (argc != 4 || strcmp(argv[2], "create"))
			return fail("usage: kumo host token create NAME   (the agent's credential; "
				    "printed once)");
		out = call("POST", "/v1/hosts/tokens", json_pack("{ss}", "host", argv[3]));
		return out ? print_table(out, NULL, (const char *const[]){"host", "token", NULL})
			   : 1;
	}
	return simple(argc, argv, "host", "/v1/hosts", "hosts", cols, NULL);
}

static int cmd_usage(int argc, char **argv)
{
	static const char *const cols[] = {"tenant", "vm_seconds", "vcpu_seconds",
					   "ram_gib_seconds", NULL};
	char path[128] = "/v1/usage";
	const char *start = NULL, *end = NULL;

	for (int i = 1; i + 1 < argc; i += 2) {
		if (!strcmp(argv[i], "--start"))
			start = argv[i + 1];
		else if (!strcmp(argv[i], "--end"))
			end = argv[i + 1];
		else
			return fail("usage: kumo usage [--start UNIX_SECONDS] [--end UNIX_SECONDS]");
	}
	if (start || end)
		snprintf(path, sizeof(path), "/v1/usage?%s%.20s%s%s%.20s", start ? "start=" : "",
			 start ? start : "", start && end ? "&" : "", end ? "end=" : "",
			 end ? end : "");
	json_t *out = call("GET", path, NULL);

	return out ? print_table(out, "usage", cols) : 1;
}

/* --- kumo up: controller + one local agent in this process --- */

static void *agent_thread(void *arg)
{
	pool_agent_run(arg, &stop_flag);
	return NULL;
}

static int cmd_up(int argc, char **argv)
{
	struct pool_ctl_config cfg = {0};
	struct pool_agent_config acfg = {0};
	char dir[PATH_MAX - 64], db[PATH_MAX], state[PATH_MAX], token[65], kumo_bin[PATH_MAX];
	char addr[64] = "127.0.0.1";
	const char *home = getenv("HOME");
	struct pool_ctl *ctl;
	pthread_t th;
	int ret;

	snprintf(dir, sizeof(dir), "%s/.local/share/kumo", home && *home ? home : "/tmp");
	for (char *p = dir + 1; *p; p++)
		if (*p == '/') {
			*p = '\0';
			mkdir(dir, 0755);
			*p = '/';
		}
	mkdir(dir, 0755);
	snprintf(db, sizeof(db), "%s/pool.db", dir);
	snprintf(state, sizeof(state), "%s/agent", dir);
	if (getenv("KUMO_ADMIN_TOKEN")) {
		snprintf(token, sizeof(token), "%s", getenv("KUMO_ADMIN_TOKEN"));
	} else {
		unsigned long long r = clock_realtime_ns() ^ ((unsigned long long)getpid() << 32);

		pool_sha256_hex(&r, sizeof(r), token);
		token[32] = '\0';
	}
	setenv("KUMO_ADMIN_TOKEN", token, 1);
	sched_config_init(&cfg.sched, (uint64_t)clock_ns());
	cfg.db_url = db;
	cfg.admin_token = token;
	ret = pool_ctl_new(&cfg, &ctl);
	if (!ret)
		ret = pool_ctl_listen(ctl, "127.0.0.1", 7000);
	if (ret)
		return fail("%s", err_get());
	agent_defaults(&acfg, kumo_bin, sizeof(kumo_bin));
	acfg.name = "local";
	acfg.state_dir = state;
	/* the local agent gets its own host token, like any other agent */
	int st_code = 0;
	static const char issue_body[] = "{\"host\":\"local\"}";
	json_t *issued = pool_ctl_handle(ctl, "POST", "/v1/hosts/tokens", token, issue_body,
					 sizeof(issue_body) - 1, &st_code);

	if (st_code != 201 || !json_is_string(json_object_get(issued, "token"))) {
		json_decref(issued);
		return fail("cannot issue the local agent's token");
	}
	snprintf(token_buf, sizeof(token_buf), "%s",
		 json_string_value(json_object_get(issued, "token")));
	json_decref(issued);
	acfg.token = token_buf;
	acfg.listen_port = 7001;
	if (argc > 1 && agent_parse(argc, argv, &acfg, addr, sizeof(addr)))
		return 1;
	acfg.listen_addr = addr;
	catch_signals();
	if (pthread_create(&th, NULL, agent_thread, &acfg))
		return fail("cannot start the agent thread");
	printf("kumo pool up: controller http://127.0.0.1:7000 (store %s), agent 'local'\n"
	       "export KUMO_URL=http://127.0.0.1:7000 KUMO_ADMIN_TOKEN=%s\n",
	       db, token);
	fflush(stdout);
	while (!stop_flag)
		pause();
	pthread_join(th, NULL);
	pool_ctl_free(ctl);
	return 0;
}

int pool_cli_main(int argc, char **argv)
{
	static const struct kv flavor_kv[] = {
		{"--vcpus", "vcpus", 'i'}, {"--ram-mb", "ram_mb", 'i'}, {"--disk-gb", "disk_gb", 'i'},
		{NULL, NULL, 0}};
	static const struct kv image_kv[] = {
		{"--arch", "arch", 's'},	  {"--hypervisor", "hypervisor", 's'},
		{"--min-ram-mb", "min_ram_mb", 'i'}, {"--kernel", "kernel", 's'},
		{"--initrd", "initrd", 's'},	  {"--append", "append", 's'},
		{NULL, NULL, 0}};
	static const struct kv tenant_kv[] = {
		{"--max-instances", "max_instances", 'i'}, {"--max-vcpus", "max_vcpus", 'i'},
		{"--max-ram-mb", "max_ram_mb", 'i'}, {NULL, NULL, 0}};
	static const struct kv group_kv[] = {{"--policy", "policy", 's'}, {NULL, NULL, 0}};
	const char *cmd = argv[0];
	int n = 0;

	/* --json may appear anywhere */
	for (int i = 0; i < argc; i++) {
		if (!strcmp(argv[i], "--json"))
			opt_json = true;
		else
			argv[n++] = argv[i];
	}
	argc = n;
	if (!strcmp(cmd, "controller"))
		return cmd_controller(argc, argv);
	if (!strcmp(cmd, "agent"))
		return cmd_agent(argc, argv);
	if (!strcmp(cmd, "up"))
		return cmd_up(argc, argv);
	if (!strcmp(cmd, "server"))
		return cmd_server(argc, argv);
	if (!strcmp(cmd, "host"))
		return cmd_host(argc, argv);
	if (!strcmp(cmd, "usage"))
		return cmd_usage(argc, argv);
	if (!strcmp(cmd, "flavor"))
		return simple(argc, argv, "flavor", "/v1/flavors", "flavors",
			      (const char *const[]){"name", "vcpus", "ram_mb", "disk_gb", NULL},
			      flavor_kv);
	if (!strcmp(cmd, "image"))
		return simple(argc, argv, "image", "/v1/images", "images",
			      (const char *const[]){"name", "arch", "hypervisor", "min_ram_mb",
						    "kernel", NULL},
			      image_kv);
	if (!strcmp(cmd, "tenant"))
		return simple(argc, argv, "tenant", "/v1/tenants", "tenants",
			      (const char *const[]){"id", "name", "instances", "max_instances",
						    "vcpus", "max_vcpus", NULL},
			      tenant_kv);
	if (!strcmp(cmd, "group"))
		return simple(argc, argv, "group", "/v1/server-groups", NULL,
			      (const char *const[]){"id", "name", "policy", NULL}, group_kv);
	return fail("unknown pool command '%s'", cmd);
}
