# The compute pool (issue 5): controller, scheduler, store backends, agent, drivers, CLI.
LDLIBS += -lmicrohttpd -ljansson -lsqlite3 -lpq -lcurl
override CFLAGS += -I/usr/include/postgresql

# Migrations are embedded with .incbin (src/pool/migrations.c); rebuild when one changes.
$(BUILD)/src/pool/migrations.o: $(wildcard src/pool/migrations/*.sql)
