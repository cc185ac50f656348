#!/usr/bin/env bash
# Debian packages the test suite's local Earth Search replica needs (idempotent).
# PostgreSQL 15 + PostGIS 3 (for pgstac), nginx (COGs over HTTP Range), gdal-bin (gdalinfo).
set -euo pipefail
need=()
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || need+=(nginx)
[ -x /usr/lib/postgresql/15/bin/initdb ] || need+=(postgresql postgresql-15)
ls /usr/share/postgresql/15/extension/postgis.control >/dev/null 2>&1 || need+=(postgresql-15-postgis-3)
command -v gdalinfo >/dev/null 2>&1 || need+=(gdal-bin)
fc-list 2>/dev/null | grep -qi dejavu || need+=(fonts-dejavu-core)
if [ ${#need[@]} -gt 0 ]; then
  echo "installing Debian packages: ${need[*]}"
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}"
fi
# Debian starts a cluster and nginx on install; the tests run their own on free ports.
if command -v systemctl >/dev/null 2>&1; then
  systemctl stop nginx postgresql >/dev/null 2>&1 || true
fi
echo "system packages ok"
