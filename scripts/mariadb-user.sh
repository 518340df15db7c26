#!/usr/bin/env bash
# Creates (or updates, idempotently) the TCP user Herald and its tests log in with on the local
# MariaDB, over the socket as root (root may not log in over TCP here), and prints the URL to use:
#
#   export HERALD_SQL_URL=$(scripts/mariadb-user.sh)        # the binary: database `herald`
#   export HERALD_TEST_MYSQL_URL=$(scripts/mariadb-user.sh)  # the contract tests (herald_t_* each)
#
# The user may do anything in `herald` and every `herald_*` database (the tests make and drop one per
# case) and in `test`, nothing else. It listens on loopback only, so its password is a development
# one: set HERALD_DB_PASSWORD for another. Starts the machine's MariaDB first if it does not answer.
set -euo pipefail

user=${HERALD_DB_USER:-herald}
password=${HERALD_DB_PASSWORD:-herald-dev}
host=127.0.0.1
port=${HERALD_DB_PORT:-3306}

if ! mariadb-admin ping --silent >/dev/null 2>&1; then
    echo "mariadb does not answer on its socket: starting it" >&2
    start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd
    for _ in $(seq 100); do
        mariadb-admin ping --silent >/dev/null 2>&1 && break
        sleep 0.2
    done
    mariadb-admin ping --silent >/dev/null || { echo "mariadb did not start" >&2; exit 1; }
fi

# Quoted for SQL: a password may hold a quote.
sql_password=${password//\'/\'\'}
mariadb --protocol=socket -u root <<SQL
CREATE USER IF NOT EXISTS '$user'@'$host' IDENTIFIED BY '$sql_password';
ALTER USER '$user'@'$host' IDENTIFIED BY '$sql_password';
CREATE DATABASE IF NOT EXISTS herald CHARACTER SET utf8mb4 COLLATE utf8mb4_bin;
GRANT ALL PRIVILEGES ON \`herald\`.* TO '$user'@'$host';
GRANT ALL PRIVILEGES ON \`herald\\_%\`.* TO '$user'@'$host';
GRANT ALL PRIVILEGES ON \`test\`.* TO '$user'@'$host';
SQL

# Percent-encoded for the URL's password part.
url_password=$(python3 -c 'import sys, urllib.parse; print(urllib.parse.quote(sys.argv[1], safe=""))' "$password")
echo "mysql://$user:$url_password@$host:$port/herald"
