#!/bin/bash
# gen-config.sh: print the packaged /etc/ledgergate/ledgergate.toml, made from
# the TOML block of docs/configuration.md with every line commented out.
# packaging/test.sh checks that packaging/ledgergate.toml equals this output;
# after a change to the docs run: packaging/gen-config.sh > packaging/ledgergate.toml
set -euo pipefail
cd "$(dirname "$0")/.."
cat <<'EOF'
# /etc/ledgergate/ledgergate.toml: the configuration of the ledgergate gateway.
#
# Every setting is listed below, commented out, with its default (see
# /usr/share/doc/ledgergate or docs/configuration.md in the source). Remove the
# leading "#" of a setting to change it. An unknown setting is an error, and
# every invalid setting is reported at once. Restart to apply:
#   systemctl restart ledgergate
#
# The node key lives in the TPM 2.0 by default ([signer] kind = "tpm"). Without a
# TPM, and without kind = "software", the gateway refuses to start.

EOF
sed -n '/^```toml$/,/^```$/p' docs/configuration.md | sed '1d;$d' | sed -E '
  /^$/b
  /^# /{s/^/#/;b}
  s/^/#/'
