#!/bin/bash
# docker-entrypoint.sh -- start the development OpenLDAP of hosted-learners
# (image built from deploy/ldap/Dockerfile).
#
#   (no argument)   render slapd.conf, load the base entries into an empty
#                   directory, then run slapd in the foreground on port 389
#   --check         render slapd.conf and check it with slaptest (image build)
#   COMMAND ...     run COMMAND instead (e.g. bash)
#
# Environment:
#   LDAP_ROOT_PASSWORD  password of the root DN (default "secret": local
#                       development and demos only); stored hashed ({SSHA})
#   LDAP_SUFFIX         directory suffix (default dc=univ-example,dc=fr); the
#                       root DN is cn=admin,<suffix>
#   SLAPD_DEBUG         slapd -d level (default "none": start-up and errors;
#                       "stats" logs every operation)
#
# No TLS here (no certificates): the template's TLS lines are left commented out,
# and the directory service binds as the root DN, which ACLs do not restrict. A
# demo only; deploy/ldap/README.md says how production differs.
#
# The data lives in /var/lib/hosted-ldap/data (a volume in docker-compose.yml).
# It is loaded once, when that directory is empty: after a change of suffix or
# schema, remove the volume (docker-compose down -v).
set -euo pipefail

TEMPLATES=/usr/share/hosted-ldap
SCHEMA_DIR=/etc/ldap/hosted/schema
CONF=/etc/ldap/hosted/slapd.conf
STATE_DIR=/var/lib/hosted-ldap
SUFFIX=${LDAP_SUFFIX:-dc=univ-example,dc=fr}
ROOTDN="cn=admin,$SUFFIX"
ROOTPW=${LDAP_ROOT_PASSWORD:-secret}
SLAPD_DEBUG=${SLAPD_DEBUG:-none}

say() { printf 'ldap: %s\n' "$*" >&2; }
die() {
	say "error: $*"
	exit 1
}

# Escapes a value for the replacement side of a sed "s|...|...|" command.
sed_escape() {
	case $1 in *$'\n'*) die "a configuration value contains a newline" ;; esac
	printf '%s' "$1" | sed -e 's/[|&\\]/\\&/g'
}

render_conf() {
	local rootpw_hash
	rootpw_hash=$(/usr/sbin/slappasswd -h '{SSHA}' -s "$ROOTPW")
	sed -e "s|@STATE_DIR@|$(sed_escape "$STATE_DIR")|g" \
		-e "s|@SCHEMA_DIR@|$(sed_escape "$SCHEMA_DIR")|g" \
		-e "s|@SUFFIX@|$(sed_escape "$SUFFIX")|g" \
		-e "s|@ROOTDN@|$(sed_escape "$ROOTDN")|g" \
		-e "s|@ROOTPW@|$(sed_escape "$rootpw_hash")|g" \
		-e "s|@DBNOSYNC@||g" \
		-e "s|@TLS@|# |g" \
		-e "s|@TLS_DIR@|/nonexistent|g" \
		-e "s|@DIRECTORY_DN@|cn=hosted-directory,ou=services,$(sed_escape "$SUFFIX")|g" \
		"$TEMPLATES/slapd.conf.in" >"$CONF.new"
	chown root:openldap "$CONF.new"
	chmod 0640 "$CONF.new"
	mv -f "$CONF.new" "$CONF"
}

render_base() {
	local dc=${SUFFIX%%,*}
	dc=${dc#dc=}
	sed -e "s|@SUFFIX@|$(sed_escape "$SUFFIX")|g" \
		-e "s|@DC@|$(sed_escape "$dc")|g" \
		"$TEMPLATES/base.ldif.in"
}

check_suffix() {
	case $SUFFIX in
	dc=?*) ;;
	*) die "LDAP_SUFFIX must start with dc= (got \"$SUFFIX\")" ;;
	esac
}

# Loads the suffix entry and ou=people, offline, into an empty database.
load_base() {
	local data="$STATE_DIR/data"
	[ -e "$data/data.mdb" ] && return 0
	say "empty directory: loading $SUFFIX and ou=people"
	if ! render_base | /usr/sbin/slapadd -f "$CONF" -b "$SUFFIX"; then
		rm -f "$data/data.mdb" "$data/lock.mdb"
		die "slapadd could not load the base entries"
	fi
}

case "${1:-}" in
'')
	check_suffix
	mkdir -p "$STATE_DIR/data"
	render_conf
	/usr/sbin/slaptest -Q -u -f "$CONF" || die "slaptest rejects $CONF"
	load_base
	chown -R openldap:openldap "$STATE_DIR"
	say "slapd: $SUFFIX on ldap://0.0.0.0:389, root DN $ROOTDN"
	# slapd binds port 389 as root, then runs as openldap; -d keeps it in
	# the foreground with its messages on stderr.
	exec /usr/sbin/slapd -f "$CONF" -h "ldap:///" -u openldap -g openldap -d "$SLAPD_DEBUG"
	;;
--check)
	check_suffix
	mkdir -p "$STATE_DIR/data"
	render_conf
	/usr/sbin/slaptest -u -f "$CONF"
	render_base >/dev/null
	;;
*)
	exec "$@"
	;;
esac
