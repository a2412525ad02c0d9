#!/usr/bin/env bash
# Runs once, from /docker-entrypoint-initdb.d, when the postgres container starts on an empty
# data volume: one role and one database per service (auth, history, stats), each owned by its
# own role, so a service can reach only its own data, as in production (one RDS per service).
# Passwords come from the container's environment (docker-compose.yml); the defaults there are
# local-development placeholders, not secrets.
set -euo pipefail

create_service_database() {
  local name="$1" password="$2"
  if [[ -z "${password}" ]]; then
    echo "postgres-init: no password given for role ${name}" >&2
    exit 1
  fi
  # psql variables (:'pw', :"name") quote the values, so no password ever reaches a shell string.
  psql --variable=ON_ERROR_STOP=1 --username "${POSTGRES_USER}" --dbname postgres \
    --set=name="${name}" --set=pw="${password}" <<'SQL'
CREATE ROLE :"name" LOGIN PASSWORD :'pw';
CREATE DATABASE :"name" OWNER :"name";
REVOKE ALL ON DATABASE :"name" FROM PUBLIC;
SQL
  # PostgreSQL 15+ no longer lets every role create objects in the public schema; hand it to the
  # service's role so its migrations own everything they create.
  psql --variable=ON_ERROR_STOP=1 --username "${POSTGRES_USER}" --dbname "${name}" \
    --set=name="${name}" <<'SQL'
ALTER SCHEMA public OWNER TO :"name";
SQL
  echo "postgres-init: database ${name} owned by role ${name}"
}

create_service_database auth "${AUTH_DB_PASSWORD:-}"
create_service_database history "${HISTORY_DB_PASSWORD:-}"
create_service_database stats "${STATS_DB_PASSWORD:-}"
