#!/bin/sh
# Regenerates the rpm package databases under tests/data/rpmdb that the
# unit tests read. Each database is made by Debian's rpm 4.18 (package
# rpm): empty packages are built with rpmbuild and recorded with
# `rpm --justdb`, so the files are real rpmdb.sqlite files, as RHEL 9,
# Fedora 33 and later use. Needs the Debian packages rpm (for rpm and
# rpmbuild) and sqlite3; the tests themselves need neither. Run from the
# repository root.
set -eu

out=tests/data/rpmdb
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

cat >"$work/empty.spec" <<'SPEC'
Name: %{pkg_name}
Version: %{pkg_version}
Release: %{pkg_release}
%if "%{pkg_epoch}" != "0"
Epoch: %{pkg_epoch}
%endif
Summary: Empty package for forge's tests
License: Apache-2.0
%description
An empty package that only puts its name and version in a package database.
%files
SPEC

# Builds one empty package: name, epoch (0 for none), version, release, arch.
build() {
  rpmbuild --quiet -bb "$work/empty.spec" --target "$5" \
    --define "_topdir $work/top" \
    --define "pkg_name $1" --define "pkg_epoch $2" \
    --define "pkg_version $3" --define "pkg_release $4" >/dev/null
}

# Records the packages that a list on stdin names in the database $1.
make_db() {
  rm -rf "$work/top" "$work/db"
  mkdir -p "$work/db"
  while read -r name epoch version release arch; do
    build "$name" "$epoch" "$version" "$release" "$arch"
  done
  rpm --dbpath "$work/db" --initdb
  rpm --dbpath "$work/db" -i --justdb --nodeps --ignorearch --ignoreos \
    "$work"/top/RPMS/*/*.rpm
  sqlite3 "$work/db/rpmdb.sqlite" 'PRAGMA wal_checkpoint(TRUNCATE); PRAGMA journal_mode=DELETE; PRAGMA page_size=1024; VACUUM;' >/dev/null
  cp "$work/db/rpmdb.sqlite" "$out/$1"
}

mkdir -p "$out"

make_db rhel9.sqlite <<'LIST'
rpm 0 4.16.1.3 29.el9 x86_64
glibc 0 2.34 100.el9 x86_64
glibc 0 2.34 100.el9 i686
openssl 1 3.0.7 27.el9 x86_64
python3 0 3.9.18 1.el9 x86_64
python3-pyasn1 0 0.4.8 6.el9 noarch
openssh-server 0 8.7p1 34.el9 x86_64
WALinuxAgent 0 2.7.0.6 9.el9 noarch
LIST

make_db rhel9-i686.sqlite <<'LIST'
rpm 0 4.16.1.3 29.el9 i686
glibc 0 2.34 100.el9 i686
openssl 1 3.0.7 27.el9 i686
python3 0 3.9.18 1.el9 i686
python3-pyasn1 0 0.4.8 6.el9 noarch
openssh-server 0 8.7p1 34.el9 i686
WALinuxAgent 0 2.7.0.6 9.el9 noarch
LIST

make_db sles15.sqlite <<'LIST'
rpm 0 4.14.3 150400.59.7.1 x86_64
glibc 0 2.31 150300.63.1 x86_64
openssl-3 0 3.0.8 150500.5.14.1 x86_64
python3 0 3.6.15 150300.10.54.1 x86_64
python3-pyasn1 0 0.4.2 150000.3.5.1 noarch
openssh-server 0 9.6p1 150600.6.15.1 x86_64
python3-azure-agent 0 2.9.1.1 150100.3.44.1 noarch
LIST

ls -l "$out"
