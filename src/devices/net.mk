# libslirp for the user-mode network back end (src/devices/backend/net_slirp.c).
LDLIBS += -lslirp
