#!/usr/bin/env bash
# System packages the full test suite needs: a PostgreSQL server (the tests start a throwaway
# one), Java 17 for Spark in local mode, and Chromium for the headless scorecard test; PostgreSQL's JDBC
# driver for the Spark cluster tests' shared metastore (tests/spark_cluster.py).
# Installs only what is missing, so a second run costs nothing. Needs root (or sudo) on Debian.
set -euo pipefail

need=()
command -v java >/dev/null 2>&1 || need+=(openjdk-17-jre-headless)
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need+=(postgresql)
command -v chromium >/dev/null 2>&1 || need+=(chromium)
[ -e /usr/share/java/postgresql.jar ] || need+=(libpostgresql-jdbc-java)

if [ ${#need[@]} -eq 0 ]; then
  echo "system deps: all present (java, postgresql, chromium, postgresql jdbc)"
  exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
echo "system deps: installing ${need[*]}"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
