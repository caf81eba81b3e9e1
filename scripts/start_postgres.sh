#!/usr/bin/env bash
# Start a throwaway PostgreSQL server for tests and benchmarks, and export its URL as REDACT_TEST_PG.
#
#   source scripts/start_postgres.sh      # CI: starts (or reuses) the server and exports REDACT_TEST_PG
#   scripts/start_postgres.sh             # prints the URL on the last line of stdout
#   scripts/start_postgres.sh stop        # stops the server (the data folder is kept for the next start)
#
# Idempotent: installs the Debian `postgresql` package only if no initdb is found (needs root), creates the
# cluster only if its folder is empty, starts it only if nothing answers on the port. The cluster lives in
# $REDACT_PG_DIR (default /tmp/redact-pg-$REDACT_PG_PORT), listens on 127.0.0.1:$REDACT_PG_PORT (default 55432)
# and a Unix socket in that folder, trusts every local connection (it is a throwaway: never expose it), runs
# with fsync off, and has one database, $REDACT_PG_DB (default redact), owned by the role `redact`.
# Run as root, the server runs as the `postgres` system user (PostgreSQL refuses to run as root).

_redact_pg_main() {
    local port="${REDACT_PG_PORT:-55432}"
    local dir="${REDACT_PG_DIR:-/tmp/redact-pg-$port}"
    local db="${REDACT_PG_DB:-redact}"
    local user=redact
    local url="postgresql://$user@127.0.0.1:$port/$db"
    local bindir as_owner=()

    _redact_pg_bindir() {
        if command -v pg_config >/dev/null 2>&1 && [ -x "$(pg_config --bindir 2>/dev/null)/initdb" ]; then
            pg_config --bindir
            return
        fi
        local d
        d=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
        if [ -n "$d" ] && [ -x "$d/initdb" ]; then echo "$d"; return; fi
        if command -v initdb >/dev/null 2>&1; then dirname "$(command -v initdb)"; return; fi
        return 1
    }

    if ! bindir=$(_redact_pg_bindir); then
        if [ "$(id -u)" != 0 ]; then
            echo "start_postgres: no PostgreSQL found and not root: install the 'postgresql' package" >&2
            return 1
        fi
        echo "start_postgres: installing the Debian postgresql package" >&2
        (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null) || {
            echo "start_postgres: apt-get install postgresql failed" >&2
            return 1
        }
        bindir=$(_redact_pg_bindir) || { echo "start_postgres: initdb not found after install" >&2; return 1; }
    fi

    if [ "$(id -u)" = 0 ]; then
        id postgres >/dev/null 2>&1 || useradd --system --no-create-home postgres || return 1
        as_owner=(runuser -u postgres --)
    fi

    if [ "${1:-}" = stop ]; then
        if [ -f "$dir/PG_VERSION" ] && "$bindir/pg_isready" -q -h 127.0.0.1 -p "$port"; then
            "${as_owner[@]}" "$bindir/pg_ctl" -D "$dir" -m fast -w stop >&2 || return 1
        fi
        unset REDACT_TEST_PG
        return 0
    fi

    if ! "$bindir/pg_isready" -q -h 127.0.0.1 -p "$port"; then
        if [ ! -f "$dir/PG_VERSION" ]; then
            mkdir -p "$dir" || return 1
            [ "$(id -u)" = 0 ] && chown postgres: "$dir"
            chmod 700 "$dir"
            "${as_owner[@]}" "$bindir/initdb" -D "$dir" -U "$user" --auth=trust -E UTF8 --locale=C.UTF-8 >"$dir.initdb.log" 2>&1 \
                || "${as_owner[@]}" "$bindir/initdb" -D "$dir" -U "$user" --auth=trust -E UTF8 --locale=C >"$dir.initdb.log" 2>&1 \
                || { echo "start_postgres: initdb failed, see $dir.initdb.log" >&2; return 1; }
            cat >>"$dir/postgresql.conf" <<EOF
# throwaway test/benchmark server (scripts/start_postgres.sh)
listen_addresses = '127.0.0.1'
port = $port
unix_socket_directories = '$dir'
fsync = off
synchronous_commit = off
full_page_writes = off
shared_buffers = 256MB
maintenance_work_mem = 512MB
max_wal_size = 4GB
EOF
        fi
        "${as_owner[@]}" "$bindir/pg_ctl" -D "$dir" -l "$dir/server.log" -w -t 60 start >/dev/null \
            || { echo "start_postgres: server did not start, see $dir/server.log" >&2; return 1; }
    fi

    if [ "$("$bindir/psql" -h 127.0.0.1 -p "$port" -U "$user" -d postgres -Atc \
            "SELECT 1 FROM pg_database WHERE datname = '$db'")" != 1 ]; then
        "$bindir/createdb" -h 127.0.0.1 -p "$port" -U "$user" "$db" || return 1
    fi
    export REDACT_TEST_PG="$url"
    echo "$url"
}

if [ "${BASH_SOURCE[0]}" != "$0" ]; then
    _redact_pg_main "$@" >/dev/null   # sourced: export REDACT_TEST_PG into the caller's shell
    _redact_pg_status=$?
    [ $_redact_pg_status = 0 ] && [ -n "${REDACT_TEST_PG:-}" ] && echo "start_postgres: REDACT_TEST_PG=$REDACT_TEST_PG" >&2
    unset -f _redact_pg_main _redact_pg_bindir
    return $_redact_pg_status
else
    set -o pipefail
    _redact_pg_main "$@"
fi
