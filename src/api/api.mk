# The control API and snapshots: libmicrohttpd, jansson and libcurl come from src/pool/pool.mk;
# zstd compresses snapshot memory (src/vmm/snapshot.c).
LDLIBS += -lzstd
