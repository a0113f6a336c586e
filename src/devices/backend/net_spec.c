/*
 * net_spec.c - the --net option: "user[,hostfwd=...][,mac=...]" or "tap,ifname=NAME[,mac=...]",
 * parsed into a struct net_spec, and the back end it names.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "devices/backend/net.h"
#include "kumo/base.h"

static const uint8_t default_mac[6] = {0x52, 0x54, 0x00, 0x12, 0x34, 0x56};

static int parse_mac(const char *s, uint8_t mac[6])
{
	unsigned v[6];
	char end;

	if (sscanf(s, "%2x:%2x:%2x:%2x:%2x:%2x%c", &v[0], &v[1], &v[2], &v[3], &v[4], &v[5], &end) != 6 ||
	    strlen(s) != 17)
		return -EINVAL;
	for (int i = 0; i < 6; i++)
		mac[i] = (uint8_t)v[i];
	/* A unicast address: the group bit (bit 0 of the first octet) must be clear. */
	if (mac[0] & 1)
		return -EINVAL;
	return 0;
}

static int parse_port(const char *s, size_t len, uint16_t *out)
{
	unsigned long v = 0;

	if (len == 0 || len > 5)
		return -EINVAL;
	for (size_t i = 0; i < len; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -EINVAL;
		v = v * 10 + (unsigned long)(s[i] - '0');
	}
	if (v < 1 || v > 65535)
		return -EINVAL;
	*out = (uint16_t)v;
	return 0;
}

static int parse_addr(const char *s, size_t len, char *out, size_t outsz)
{
	struct in_addr a;
	char buf[64];

	if (len == 0) {
		out[0] = '\0';
		return 0;
	}
	if (len >= sizeof(buf) || len >= outsz)
		return -EINVAL;
	memcpy(buf, s, len);
	buf[len] = '\0';
	if (inet_pton(AF_INET, buf, &a) != 1)
		return -EINVAL;
	memcpy(out, buf, len + 1);
	return 0;
}

/* "tcp|udp:[HOSTADDR]:HOSTPORT-[GUESTADDR]:GUESTPORT" (QEMU's hostfwd syntax). */
static int parse_hostfwd(const char *s, struct net_hostfwd *f)
{
	const char *p = s, *colon, *dash;

	memset(f, 0, sizeof(*f));
	if (!strncmp(p, "tcp:", 4)) {
		p += 4;
	} else if (!strncmp(p, "udp:", 4)) {
		f->udp = true;
		p += 4;
	} else if (*p == ':') {
		p++; /* protocol omitted: tcp */
	} else {
		return -EINVAL;
	}
	dash = strchr(p, '-');
	if (!dash)
		return -EINVAL;
	colon = memchr(p, ':', (size_t)(dash - p));
	if (!colon || parse_addr(p, (size_t)(colon - p), f->host_addr, sizeof(f->host_addr)) ||
	    parse_port(colon + 1, (size_t)(dash - colon - 1), &f->host_port))
		return -EINVAL;
	p = dash + 1;
	colon = strchr(p, ':');
	if (!colon || parse_addr(p, (size_t)(colon - p), f->guest_addr, sizeof(f->guest_addr)) ||
	    parse_port(colon + 1, strlen(colon + 1), &f->guest_port))
		return -EINVAL;
	return 0;
}

int net_spec_parse(const char *arg, struct net_spec *out)
{
	char *copy, *save = NULL, *tok;
	int ret = -EINVAL;

	memset(out, 0, sizeof(*out));
	memcpy(out->mac, default_mac, sizeof(default_mac));
	if (!arg || !*arg) {
		err_set("--net: empty value (try 'user' or 'tap,ifname=NAME')");
		return -EINVAL;
	}
	copy = strdup(arg);
	if (!copy) {
		err_set("out of memory");
		return -ENOMEM;
	}
	tok = strtok_r(copy, ",", &save);
	if (tok && !strcmp(tok, "user")) {
		out->kind = NET_USER;
	} else if (tok && !strcmp(tok, "tap")) {
		out->kind = NET_TAP;
	} else {
		err_set("--net: unknown type '%s' (types: user, tap)", tok ? tok : "");
		goto out_free;
	}
	while ((tok = strtok_r(NULL, ",", &save)) != NULL) {
		char *eq = strchr(tok, '=');
		const char *val;

		if (!eq) {
			err_set("--net: '%s' is not KEY=VALUE", tok);
			goto out_free;
		}
		*eq = '\0';
		val = eq + 1;
		if (!strcmp(tok, "mac")) {
			if (parse_mac(val, out->mac)) {
				err_set("--net: mac '%s' is not a unicast XX:XX:XX:XX:XX:XX address", val);
				goto out_free;
			}
		} else if (!strcmp(tok, "hostfwd") && out->kind == NET_USER) {
			if (out->nfwd == NET_MAX_HOSTFWD) {
				err_set("--net: more than %d hostfwd entries", NET_MAX_HOSTFWD);
				goto out_free;
			}
			if (parse_hostfwd(val, &out->fwd[out->nfwd])) {
				err_set("--net: hostfwd '%s' is not tcp|udp:[HOSTADDR]:HOSTPORT-[GUESTADDR]:GUESTPORT "
					"with IPv4 addresses and ports 1-65535",
					val);
				goto out_free;
			}
			out->nfwd++;
		} else if (!strcmp(tok, "ifname") && out->kind == NET_TAP) {
			if (!*val || strlen(val) >= NET_IFNAME_MAX || strchr(val, '/')) {
				err_set("--net: ifname '%s' is not an interface name of 1-%d bytes", val,
					NET_IFNAME_MAX - 1);
				goto out_free;
			}
			strcpy(out->ifname, val);
		} else {
			err_set("--net: unknown key '%s' for type %s (keys: %s)", tok,
				out->kind == NET_USER ? "user" : "tap",
				out->kind == NET_USER ? "hostfwd, mac" : "ifname, mac");
			goto out_free;
		}
	}
	if (out->kind == NET_TAP && !out->ifname[0]) {
		err_set("--net: tap needs ifname=NAME");
		goto out_free;
	}
	ret = 0;
out_free:
	free(copy);
	return ret;
}

int net_backend_new(const struct net_spec *spec, struct net_backend **out)
{
	switch (spec->kind) {
	case NET_USER:
		return net_slirp_new(spec, out);
	case NET_TAP:
		return net_tap_new(spec, out);
	}
	err_set("--net: no back end type");
	return -EINVAL;
}
