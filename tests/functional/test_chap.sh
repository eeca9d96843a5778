#!/usr/bin/env bash
# CHAP: a host with a secret logs in only with the right user and secret (given in
# the libiscsi URL, iscsi://user%secret@host:port/iqn/lun); mutual CHAP authenticates
# the target too.
. "$(dirname "$0")/lib.sh"
start_rodd

I=iqn.2000-01.org.test:chapper
M=iqn.2000-01.org.test:mutual
printf 'chap-secret-123\n' >"$ROD_TMP/s"
printf 'target-secret-456\n' >"$ROD_TMP/ts"
rodctl vol create cv --size 8M >/dev/null
rodctl host create chapper --iqn $I --chap-user alice --chap-secret-file "$ROD_TMP/s" >/dev/null
rodctl host create mutual --iqn $M --chap-user bob --chap-secret-file "$ROD_TMP/s" \
	--mutual-user target1 --mutual-secret-file "$ROD_TMP/ts" >/dev/null
rodctl host connect chapper cv >/dev/null
rodctl host connect mutual cv >/dev/null

expect_rc 3 rodtest_iscsi -i $I login "$(rod_url 0)"                          # no CHAP offered
expect_rc 3 rodtest_iscsi -i $I login "$(rod_url 0 alice%wrong-secret-00)"    # wrong secret
expect_rc 3 rodtest_iscsi -i $I login "$(rod_url 0 mallory%chap-secret-123)"  # wrong user
rodtest_iscsi -i $I write "$(rod_url 0 alice%chap-secret-123)" 0 8 5 || fail "CHAP login with the right secret"
rodtest_iscsi -i $I verify "$(rod_url 0 alice%chap-secret-123)" 0 8 5 || fail "read back over CHAP"

# mutual: the initiator checks the target's answer too
rodtest_iscsi -i $M -T target1 -P target-secret-456 login "$(rod_url 0 bob%chap-secret-123)" \
	|| fail "mutual CHAP login"
expect_rc 3 rodtest_iscsi -i $M -T target1 -P not-the-target-secret login "$(rod_url 0 bob%chap-secret-123)"

# secrets are validated at host create
expect_rc 1 rodctl host create m2 --iqn iqn.2000-01.org.test:m2 --chap-user c --chap-secret-file "$ROD_TMP/s" \
	--mutual-user t --mutual-secret-file "$ROD_TMP/s"
expect_stderr 'must differ'
expect_rc 1 rodctl host create m3 --iqn iqn.2000-01.org.test:m3 --mutual-user t --mutual-secret-file "$ROD_TMP/ts"

stop_rodd
note "ok"
